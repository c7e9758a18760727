//! What a tower is, layer by layer, as Keras' `model.summary()` shows it: each layer's output shape,
//! parameters and activation memory, then the training step's GPU memory beside the adapter's limits.
//! `gpu-siamese summary` prints it, and `train` at its start.

use crate::gpu::Gpu;
use crate::model::Plan;

fn size(bytes: u64) -> String {
    match bytes {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / (1u64 << 30) as f64),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / (1u64 << 10) as f64),
        b => format!("{b} B"),
    }
}

/// The table of `plan`'s layers: output shape, trainable parameters, and the bytes one image's output
/// takes (a view, such as flatten, stores nothing of its own).
pub fn layer_table(plan: &Plan) -> String {
    let mut rows = vec![(
        "input".to_string(),
        format!("{}x{}x{}", plan.input.h, plan.input.w, plan.input.c),
        String::new(),
        size(4 * plan.input.len() as u64),
    )];
    for (layer, spec) in plan.layers.iter().zip(&plan.spec.layers) {
        let out = layer.op.output();
        let shape = if out.flat { format!("{}", out.c) } else { format!("{}x{}x{}", out.h, out.w, out.c) };
        let params = layer.params.as_ref().map_or(0, |r| r.len());
        let stored = if layer.op.is_view() { "(a view)".to_string() } else { size(4 * out.len() as u64) };
        rows.push((spec.to_string(), shape, if params == 0 { String::new() } else { params.to_string() }, stored));
    }
    let widths = [
        rows.iter().map(|r| r.0.len()).max().unwrap_or(0).max(5),
        rows.iter().map(|r| r.1.len()).max().unwrap_or(0).max(6),
        rows.iter().map(|r| r.2.len()).max().unwrap_or(0).max(10),
    ];
    let mut text = format!("{:<a$}  {:<b$}  {:>c$}  output per image\n", "layer", "output", "parameters", a = widths[0], b = widths[1], c = widths[2]);
    for (name, shape, params, stored) in rows {
        text.push_str(&format!("{name:<a$}  {shape:<b$}  {params:>c$}  {stored}\n", a = widths[0], b = widths[1], c = widths[2]));
    }
    let activations: u64 = plan.layers.iter().filter(|l| !l.op.is_view()).map(|l| 4 * l.op.output().len() as u64).sum();
    text.push_str(&format!(
        "{} trainable parameters ({}); {} of layer outputs per image, {} with their gradients for a training step",
        plan.trainable_params(),
        size(4 * plan.trainable_params() as u64),
        size(activations),
        size(2 * activations)
    ));
    text
}

/// The training step's GPU memory beside what the adapter allows.
pub fn step_memory_line(gpu: &Gpu, pairs: usize, bytes: u64, micro_batches: usize) -> String {
    let micro = if micro_batches > 1 {
        format!(", run in {micro_batches} micro-batches (a step too large for one binding is cut into slices that give the whole batch's bits: it fits)")
    } else {
        String::new()
    };
    format!(
        "a training step of {pairs} pairs takes {} of GPU memory{micro}; the adapter binds up to {} at once (in buffers of up to {})",
        size(bytes),
        size(gpu.max_binding_bytes()),
        size(gpu.limits.max_buffer_size)
    )
}
