"""The application: dialogue service, front ends (console, Telegram), retraining, and the CLI."""
