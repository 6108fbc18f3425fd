use super::*;

pub use super::tests_fixture::PAPER_FIG6;

#[test]
fn paper_fig6_loads_unchanged() {
    let rules = parse_rules(PAPER_FIG6).unwrap();
    assert_eq!(rules.len(), 1);
    let r = &rules[0];
    assert_eq!(r.name, "#1");
    assert_eq!(r.check.kind, CheckKind::Icmp);
    assert_eq!(r.check.address, "192.168.1.1");
    assert_eq!(r.check.interval, Duration::from_secs(1));
    assert_eq!((r.check.failure_count, r.check.normal_count), (3, 1));
    assert_eq!(
        r.normal,
        vec![
            StateRecord {
                camera: 1,
                address: None,
                channel: None
            },
            StateRecord {
                camera: 2,
                address: None,
                channel: None
            },
        ]
    );
    assert_eq!(
        r.failure[1],
        StateRecord {
            camera: 2,
            address: Some("192.168.2.2".into()),
            channel: None
        }
    );
    let b = r.backup.as_ref().unwrap();
    assert_eq!(b.address, "192.168.1.1");
    assert_eq!(b.cameras[1], CameraMap { local: 2, remote: 2 });
    // An array of the same rule loads too.
    assert_eq!(parse_rules(&format!("[{PAPER_FIG6}]")).unwrap(), rules);
}

#[test]
fn extensions_keep_the_shape() {
    let text = r#"[{ "name": "primary-a", "release_delay": 2.5,
        "check": { "address": "10.0.0.1", "type": "http", "port": 8080, "interval": 0.2, "timeout": 0.15,
                   "failure_count": 2, "normal_count": 3 },
        "states": { "normal": [ { "camera": 5, "address": "n/a" } ],
                    "failure": [ { "camera": 5, "address": "10.0.1.9", "channel": 2 } ] } },
      { "name": "cam-redundancy",
        "check": { "address": "10.0.1.1", "type": "tcp", "port": 554, "interval": 1, "failure_count": 3, "normal_count": 1 },
        "states": { "normal": [ { "camera": 6, "address": "10.0.1.20" } ],
                    "failure": [ { "camera": 6, "address": "10.0.1.21" } ] } }]"#;
    let rules = parse_rules(text).unwrap();
    assert_eq!(rules[0].check.kind, CheckKind::Http);
    assert_eq!(rules[0].check.interval, Duration::from_millis(200));
    assert_eq!(rules[0].check.timeout, Duration::from_millis(150));
    assert_eq!(rules[0].release_delay, Duration::from_millis(2500));
    assert_eq!(rules[0].failure[0].channel, Some(2));
    assert!(rules[0].backup.is_none());
    assert_eq!(rules[1].check.port, Some(554));
    assert_eq!(rules[1].release_delay, DEFAULT_RELEASE_DELAY);
}

#[test]
fn malformed_rules_give_field_level_errors() {
    let text = r#"[{ "name": "a",
        "check": { "address": "", "interval": -1, "failure_count": 0, "normal_count": "1", "type": "smoke", "colour": 1 },
        "states": { "normal": [ { "camera": 1 } ], "failure": [ { "camera": 1, "address": "x" }, { "camera": 1, "address": "y" } ] },
        "backup": { "address": "z", "cameras": [ { "local": 7, "remote": 1 } ] } },
      { "name": "a", "check": { "address": "h", "type": "tcp", "interval": 1, "failure_count": 1, "normal_count": 1 },
        "states": { "normal": [] } }]"#;
    let errs = parse_rules(text).unwrap_err();
    let got: Vec<String> = errs.iter().map(|e| format!("{}|{}", e.rule, e.field)).collect();
    for want in [
        "`a`|check.colour",
        "`a`|check.address",
        "`a`|check.type",
        "`a`|check.interval",
        "`a`|check.failure_count",
        "`a`|check.normal_count",
        "`a`|states.normal[0].address",
        "`a`|states.failure[1].camera",
        "`a`|name",
        "`a`|check.port",
        "`a`|states.failure",
    ] {
        assert!(got.contains(&want.to_string()), "missing {want} in {got:#?}");
    }
    let shown = errs[0].to_string();
    assert!(shown.starts_with("rule `a`: "), "{shown}");
}

#[test]
fn syntax_errors_name_the_line() {
    let e = parse_rules("{\n  \"check\": {,\n}").unwrap_err();
    assert!(e[0].field.starts_with("line 2"), "{:?}", e[0]);
    let e = parse_rules("42").unwrap_err();
    assert!(e[0].message.contains("rule object"));
}

#[test]
fn backup_must_map_cameras_of_the_failure_state() {
    let text = PAPER_FIG6.replace(r#"{ "local": 2, "remote": 2 }"#, r#"{ "local": 9, "remote": 2 }"#);
    let e = parse_rules(&text).unwrap_err();
    assert_eq!(e[0].field, "backup.cameras[1].local");
}

#[test]
fn state_records_resolve_through_the_camera_list() {
    let rule = parse_rules(PAPER_FIG6).unwrap().remove(0);
    let cams = [
        CameraRef {
            name: "east",
            host: "192.168.2.1",
            channel: None,
        },
        CameraRef {
            name: "west",
            host: "192.168.2.2",
            channel: Some(1),
        },
        CameraRef {
            name: "west-2",
            host: "192.168.2.2",
            channel: Some(2),
        },
    ];
    let r = resolve(&rule, &cams, &[1, 2]).unwrap();
    assert_eq!(r.normal, vec![(1, None), (2, None)]);
    // Without `channel`, a record means the camera's channel 1.
    assert_eq!(r.failure, vec![(1, Some("east".into())), (2, Some("west".into()))]);
    let e = resolve(&rule, &cams[..1], &[1]).unwrap_err();
    let fields: Vec<&str> = e.iter().map(|e| e.field.as_str()).collect();
    assert_eq!(
        fields,
        vec![
            "states.normal[1].camera",
            "states.failure[1].camera",
            "states.failure[1].address"
        ]
    );
}
