"""What finite networks do, measured with manual_bp's explicit backprop: one module per study
(`flow`/`sweep`, `train`/`trainability`, `jacobian`, `finite_width`, `recurrent`) and `runner`,
the process pool the grids run on."""
