//! The in-memory filesystem with a live and a durable state (to be written).
