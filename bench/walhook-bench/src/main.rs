//! `walhook-bench`: see the library's documentation (`bench/walhook-bench/src/lib.rs`).

use clap::Parser;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let options = walhook_bench::Options::parse();
    let table = walhook_bench::run(&options).await?;
    println!("{table}");
    Ok(())
}
