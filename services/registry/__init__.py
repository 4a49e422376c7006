"""Registry service: a governance layer over MLflow (models, prompts, datasets, promotions, audit)."""
