//! Integration tests of cairn-proto.
