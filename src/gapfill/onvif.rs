//! TEMPORARY until the `edge` branch lands `crate::replay::open`.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::fetch::{FrameStream, Replayer};
use crate::replay::{ReplayError, ReplaySource};
use crate::time::Time90k;

pub struct Onvif;

impl Replayer for Onvif {
    fn open(
        &self,
        src: ReplaySource,
        _start: Time90k,
        _end: Time90k,
    ) -> BoxFuture<'static, Result<Box<dyn FrameStream>, ReplayError>> {
        Box::pin(async move {
            Err(ReplayError::Unsupported {
                url: src.url.to_string(),
                reason: "no replay client in this build".into(),
            })
        })
    }
}

pub fn replayer() -> Arc<dyn Replayer> {
    Arc::new(Onvif)
}
