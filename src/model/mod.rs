//! The twin's tower: its spec, its layers' shapes for an input size and batch, and its parameters.

mod params;
mod plan;
mod spec;

pub use params::{glorot_uniform, ParamTensor};
pub use plan::{InputShape, LayerOp, Plan, PlanError, PlannedLayer, PARAM_ALIGN};
pub use spec::{LayerSpec, SpecError, TowerSpec, TUTORIAL_INTENDED_TOWER, TUTORIAL_TOWER};
