//! # tests: end-to-end tests against the real `careline` binary
