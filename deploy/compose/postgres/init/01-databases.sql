-- Runs once, on the first start with an empty data volume: MLflow gets POSTGRES_DB (mlflow), the feedback
-- and registry services a database each, so any of them can move to an external server alone.
CREATE DATABASE feedback;
CREATE DATABASE registry;
