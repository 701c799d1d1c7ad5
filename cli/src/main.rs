//! `fieldsync`: a device replica on disk.
fn main() {}
