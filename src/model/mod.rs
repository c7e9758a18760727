//! The twin's tower: its spec, its layers laid out for an input size and batch, and its parameters.

mod params;
mod plan;
mod spec;

pub use params::{glorot_uniform, ParamTensor};
pub use plan::{InputShape, Plan, PlanError, PlannedLayer, PARAM_ALIGN};
pub use spec::{Args, NamedTower, SpecError, TowerSpec, COLOUR_TOWER, NAMED_TOWERS, SMALL_TOWER, TUTORIAL_INTENDED_TOWER, TUTORIAL_TOWER};
