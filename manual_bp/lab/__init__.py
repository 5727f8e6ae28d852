"""The gradient-flow lab: theory and measurement, built on the core (network, ops, losses).

- `initializers`: torch.nn.init's distributions as a table, and the σ_w², σ_b² they give;
- `meanfield`: the variance and correlation maps, χ, fixed points, the δ and weight-gradient
  ratio theory, the critical line and the depth scales ξ_q, ξ_c;
- `flow`, `sweep`: one random MLP's per-layer δ and ∂L/∂W, and the sweep's tables;
- `train`, `trainability`: minibatch SGD, positive homogeneity, trainability cells;
- `jacobian`: the input–output Jacobian from explicit factors and its free-probability
  spectrum; `finite_width`: per-example fluctuations (Hanin 2018);
- `recurrent`: the recurrent lab (RNN, LSTM, GRU on the adding problem);
- `io` (the one atomic writer), `runner` (process pool / Dask, sparse progress lines),
  `report/` (one module per experiment: one function per figure, findings, README).
"""
