"""What mean-field theory predicts: `meanfield` (maps, χ, fixed points, depth scales) and
`initializers` (the σ_w², σ_b² each torch.nn.init distribution gives). NumPy and SciPy."""
