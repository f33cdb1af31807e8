"""Speech quality metrics (:mod:`snnse.metrics.quality`)."""
