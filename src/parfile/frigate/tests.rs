use super::*;

const FIXTURE: &str = include_str!("../../../tests/data/frigate/config.yml");

#[test]
fn print_fixture() {
    let c = convert(FIXTURE, "config.yml").unwrap();
    println!("{}", c.toml);
    for w in &c.warnings {
        println!("W {w}");
    }
}
