//! The `headwater` binary (placeholder while the foundation lands).
fn main() {}
