//! Benchmark scenarios (`guildhall bench ...`).

#[derive(clap::Subcommand)]
pub enum Scenario {}

pub async fn run(scenario: Scenario) -> Result<(), String> {
    match scenario {}
}
