//! Tandem's simulated camera: a real RTSP server serving synthetic H.264 whose
//! every frame carries a stamp (camera id, sequence number, capture time), so
//! that loss can be counted in any recorder's output. A product feature for
//! demos, tests and benchmarks, not a test mock. `hostile` is its adversarial
//! sibling: a camera that misbehaves on purpose. With edge storage it
//! records its last minutes like a camera's SD card and replays them the ONVIF
//! Profile G way (`edge`, `replay`).

pub mod edge;
pub mod hostile;
pub mod replay;
pub mod rtsp;
pub mod script;
pub mod server;
mod session;
pub mod video;

pub use script::{Crossing, MotionLog, MotionScript};
pub use server::{start, start_with_edge, SimOptions, SimServer};
pub use video::{encode_loop, encode_scripted, EncodedLoop, VideoSpec};
