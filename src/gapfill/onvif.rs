//! The production `Replayer`: the ONVIF Profile G replay client of
//! `crate::replay`, behind gap fill's small trait so the fetch logic is
//! tested with scripted streams. Must never add behaviour of its own.

use std::sync::Arc;

use futures::future::BoxFuture;

use super::fetch::{FrameStream, Replayer};
use crate::replay::{ReplayError, ReplayFrame, ReplaySource, ReplayStream};
use crate::time::Time90k;

/// Opens replays with `crate::replay::open`.
pub struct Onvif;

impl FrameStream for ReplayStream {
    fn next_frame(&mut self) -> BoxFuture<'_, Option<Result<ReplayFrame, ReplayError>>> {
        Box::pin(self.next())
    }
}

impl Replayer for Onvif {
    fn open(
        &self,
        src: ReplaySource,
        start: Time90k,
        end: Time90k,
    ) -> BoxFuture<'static, Result<Box<dyn FrameStream>, ReplayError>> {
        Box::pin(async move {
            let s = crate::replay::open(&src, start, end).await?;
            Ok(Box::new(s) as Box<dyn FrameStream>)
        })
    }
}

/// The replayer a running NVR uses.
pub fn replayer() -> Arc<dyn Replayer> {
    Arc::new(Onvif)
}
