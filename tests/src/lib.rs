//! End-to-end tests of FieldSync live in `e2e/`; this library is empty.
