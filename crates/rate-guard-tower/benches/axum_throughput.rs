//! Axum hello-world throughput with and without the layer (filled in below).

fn main() {}
