"""How good an explanation or a model is, measured: agreement between explanations, ground
truth on drawn faces, sanity checks and the shortcut report's reading. Reports, benchmarks and
tests share them."""
