"""Alerts out: rules over the signal feed and newly ingested transfers, posted to webhooks and logged.

- :mod:`alerts.rules`: what fires. Signal rules (``signal``, ``regime_switch``, ``vol_spike``) run per
  stream with explicit state; transfer rules are forensics' own (:func:`forensics.queries.alerts`). Each
  firing gets a deterministic key. No heavy import, so ``continuum alerts --help`` stays instant.
- :mod:`alerts.payloads`: the JSON a webhook receives (Slack, Discord, or the alert as it is).
- :mod:`alerts.delivery`: webhooks, POST with retries (exponential backoff, full jitter, Retry-After), one
  sender thread and bounded queue per webhook.
- :mod:`alerts.store`: the outbox (the lake's ``alert`` table), the delivery journal, the rule state.
- :mod:`alerts.engine`: :class:`~alerts.engine.Alerter`, the whole thing in-process
  (``Alerter(cfg).on_signal(sig)``), and the two loops ``continuum alerts --follow`` runs (bus or lake).

docs/alerts.md has the rules, the configuration, the payloads and the delivery guarantee.
"""
