"""What an operator sees of a running bot: Prometheus metrics (`metrics`), one-line JSON logs
(`log_format`, `log_setup`), and the `/metrics`, `/healthz` and `/readyz` endpoints
(`endpoints`, `readiness`). Nothing here knows Telegram; `bot.telegram.status` wires it in."""
