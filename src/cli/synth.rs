//! `hybrid-run synth` (placeholder until its owner lands it).

#[derive(clap::Args, Debug)]
pub struct Args {}

pub fn run(_args: Args) -> anyhow::Result<()> {
    anyhow::bail!("`synth` is not built yet")
}
