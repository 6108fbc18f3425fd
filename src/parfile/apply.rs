//! (helper "api" owns this file) The one way a configuration is applied —
//! from the API, the CLI, SIGHUP and rollback.
