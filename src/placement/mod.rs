//! Where each part of the model lives: the placement planner ([`Plan`]) that fits the trunk,
//! the per-sequence state, the speculative snapshot ring and as many dense FFN layers as fit
//! under a VRAM budget; `--vram-budget` sizes ([`parse_size`]); and `--profile`'s time
//! accounting ([`profile`]).

mod plan;
pub mod profile;
mod scratch;
mod size_arg;

pub use plan::{Bandwidths, Plan, PlanError, PlanRequest, Reservation};
pub use scratch::ScratchModel;
pub use size_arg::{parse_size, SizeArgError};
