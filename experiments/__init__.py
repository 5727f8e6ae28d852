"""The gradient-flow lab: runnable studies (`python -m experiments.NAME`) that write reports/.

Not installed with the wheel, and it needs the `lab` extra (matplotlib, tqdm, scikit-learn,
threadpoolctl). One shape for every study:

- `theory/`: what mean-field theory predicts (`meanfield`: the variance and correlation maps,
  χ, fixed points, depth scales, the ratio theory; `initializers`: torch.nn.init's
  distributions as a table, and the σ_w², σ_b² each gives);
- `measure/`: what finite networks do (`flow`, `sweep`, `train`, `trainability`, `jacobian`,
  `finite_width`, `recurrent`), and `runner`, the process pool the grids run on;
- `report/`: one module per study (CSV text, one function per figure, findings, README),
  `common` (tables, figures) and `io` (the one atomic writer);
- `NAME.py`: one thin command line per study: flags, a fixed seed, run, write.

The core it measures with is manual_bp (NumPy and SciPy only); `benchmark` times torch_ref.
"""
