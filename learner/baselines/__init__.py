"""Baselines run in the same harness as Hope, with the same features and targets.

EWMA (RiskMetrics) and HAR-RV volatility, GARCH(1,1) (the ``arch`` package), an online linear model
(River), a same-size GRU and Transformer fine-tuned online with Adam, and a GRU retrained on a
sliding window every N days (the way freqtrade's FreqAI retrains).
"""
