# Secrets Manager holds what NOVA must not see in plain configuration. ECS hands them to the containers as
# environment variables (`secrets` in the task definitions): ECS cannot mount a Secrets Manager secret as a
# file, so NOVA's *_FILE variables are for Kubernetes and the single VM.

locals {
  # TLS to PostgreSQL: sslmode=require encrypts without verifying the server, whose certificate is signed by the
  # RDS CAs (not among the system's roots); verify-full needs the RDS bundle in the image and sslrootcert=PATH.
  db_sslmode = var.db_require_tls ? "require" : "prefer"
}

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:Rotating the password needs a rotation Lambda and a rolling restart of NOVA's tasks (each reads NOVA_DATABASE_URL once at start); rotate by updating random_password and redeploying.
  name_prefix             = "${var.name}/database-url-"
  description             = "NOVA_DATABASE_URL: postgres://nova:PASSWORD@HOST:5432/nova?sslmode=${local.db_sslmode}"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "database_url" {
  secret_id     = aws_secretsmanager_secret.database_url.id
  secret_string = "postgres://nova:${random_password.db.result}@${aws_db_instance.main.address}:${aws_db_instance.main.port}/nova?sslmode=${local.db_sslmode}"
}

# NOVA_REDIS_URL of the API tasks: TLS (rediss://, verified against the system's roots, which hold the CAs of
# ElastiCache's certificates) with the AUTH token.
resource "aws_secretsmanager_secret" "redis_url" {
  #checkov:skip=CKV2_AWS_57:The AUTH token is set on the replication group by Terraform, and each API task reads NOVA_REDIS_URL once at start; rotate by replacing random_password.redis and redeploying the API service.
  name_prefix             = "${var.name}/redis-url-"
  description             = "NOVA_REDIS_URL: rediss://:AUTH_TOKEN@HOST:6379"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "redis_url" {
  secret_id     = aws_secretsmanager_secret.redis_url.id
  secret_string = "rediss://:${random_password.redis.result}@${aws_elasticache_replication_group.main.primary_endpoint_address}:${aws_elasticache_replication_group.main.port}"
}

resource "aws_secretsmanager_secret" "llm_api_key" {
  #checkov:skip=CKV2_AWS_57:A model provider's key is rotated at the provider; put the new value with `aws secretsmanager put-secret-value` and redeploy.
  name_prefix             = "${var.name}/llm-api-key-"
  description             = "NOVA_LLM_API_KEY: the model provider's key (a placeholder until you put the real one)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

# A placeholder, so that tasks start before a key is set; the real key is put out of band and Terraform
# leaves it alone (it never enters the state).
resource "aws_secretsmanager_secret_version" "llm_api_key" {
  secret_id     = aws_secretsmanager_secret.llm_api_key.id
  secret_string = "unset"

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# The API key of the tenant `default`: every API task gets it as NOVA_API_KEY and adds it at start when it is
# not there yet (so NOVA never answers beyond loopback without a key). Its value is in the Terraform state; read
# it with the api_key_command output. More keys, and tenants of their own: `nova keys create` through ECS Exec.
resource "random_password" "api_key" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "api_key" {
  #checkov:skip=CKV2_AWS_57:A NOVA API key is rotated with `nova keys create` and `nova keys revoke`, not by a rotation Lambda.
  name_prefix             = "${var.name}/api-key-"
  description             = "NOVA_API_KEY of the API tasks: the API key (nova_...) of the tenant default"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "api_key" {
  secret_id     = aws_secretsmanager_secret.api_key.id
  secret_string = "nova_${random_password.api_key.result}"
}
