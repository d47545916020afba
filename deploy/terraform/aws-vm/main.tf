# NOVA on one EC2 VM: `nova serve` (API and workers in one process) in a container, its SQLite database and
# documents on an encrypted EBS volume with daily snapshots; optionally the database in RDS PostgreSQL.

data "aws_caller_identity" "current" {}

data "aws_partition" "current" {}

data "aws_ssm_parameter" "al2023_ami" {
  name = "/aws/service/ami-amazon-linux-latest/al2023-ami-kernel-default-x86_64"
}

locals {
  # A private ECR image is pulled after `docker login` with the instance role.
  ecr_registry = can(regex("^[0-9]+\\.dkr\\.ecr\\.[a-z0-9-]+\\.amazonaws\\.com/", var.container_image)) ? split("/", var.container_image)[0] : ""
  public_port  = var.domain_name == "" ? 8080 : 443
}

resource "aws_kms_key" "main" {
  description         = "NOVA VM: data volume, secrets, logs"
  enable_key_rotation = true

  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [
      {
        Sid       = "AccountAdministers"
        Effect    = "Allow"
        Principal = { AWS = "arn:${data.aws_partition.current.partition}:iam::${data.aws_caller_identity.current.account_id}:root" }
        Action    = "kms:*"
        Resource  = "*"
      },
      {
        Sid       = "CloudWatchLogsEncrypt"
        Effect    = "Allow"
        Principal = { Service = "logs.${var.region}.amazonaws.com" }
        Action    = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
        Resource  = "*"
        Condition = {
          ArnLike = {
            "kms:EncryptionContext:aws:logs:arn" = "arn:${data.aws_partition.current.partition}:logs:${var.region}:${data.aws_caller_identity.current.account_id}:log-group:*"
          }
        }
      },
    ]
  })
}

resource "aws_kms_alias" "main" {
  name          = "alias/${var.name}-vm"
  target_key_id = aws_kms_key.main.key_id
}

# ---------------------------------------------------------------------------------------------------------------
# Network: one public subnet for the VM, two private ones for the optional RDS instance. No NAT gateway.
# ---------------------------------------------------------------------------------------------------------------

resource "aws_vpc" "main" {
  cidr_block           = var.vpc_cidr
  enable_dns_support   = true
  enable_dns_hostnames = true
  tags                 = { Name = var.name }
}

resource "aws_default_security_group" "default" {
  vpc_id = aws_vpc.main.id
}

resource "aws_internet_gateway" "main" {
  vpc_id = aws_vpc.main.id
  tags   = { Name = var.name }
}

resource "aws_subnet" "public" {
  vpc_id            = aws_vpc.main.id
  availability_zone = var.availability_zones[0]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 0)
  tags              = { Name = "${var.name}-public" }
}

resource "aws_subnet" "private" {
  count = 2

  vpc_id            = aws_vpc.main.id
  availability_zone = var.availability_zones[count.index]
  cidr_block        = cidrsubnet(var.vpc_cidr, 8, 100 + count.index)
  tags              = { Name = "${var.name}-private-${count.index}" }
}

resource "aws_route_table" "public" {
  vpc_id = aws_vpc.main.id

  route {
    cidr_block = "0.0.0.0/0"
    gateway_id = aws_internet_gateway.main.id
  }
}

resource "aws_route_table_association" "public" {
  subnet_id      = aws_subnet.public.id
  route_table_id = aws_route_table.public.id
}

resource "aws_flow_log" "vpc" {
  vpc_id               = aws_vpc.main.id
  traffic_type         = "REJECT"
  log_destination_type = "cloud-watch-logs"
  log_destination      = aws_cloudwatch_log_group.flow_logs.arn
  iam_role_arn         = aws_iam_role.flow_logs.arn
}

resource "aws_iam_role" "flow_logs" {
  name = "${var.name}-vm-flow-logs"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "vpc-flow-logs.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy" "flow_logs" {
  name = "write-flow-logs"
  role = aws_iam_role.flow_logs.id
  policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect   = "Allow"
      Action   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
      Resource = "${aws_cloudwatch_log_group.flow_logs.arn}:*"
    }]
  })
}

resource "aws_security_group" "vm" {
  name        = "${var.name}-vm"
  description = "NOVA VM: the API from the allowed networks"
  vpc_id      = aws_vpc.main.id

  ingress {
    description = var.domain_name == "" ? "NOVA over HTTP" : "NOVA over HTTPS (Caddy)"
    from_port   = local.public_port
    to_port     = local.public_port
    protocol    = "tcp"
    cidr_blocks = var.ingress_cidrs
  }

  egress {
    description = "HTTPS out: packages, the image registry, Secrets Manager, CloudWatch, Let's Encrypt, the model's API, webhooks, sandbox runs with network on"
    from_port   = 443
    to_port     = 443
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "HTTP out: packages, webhooks and sandbox runs with network on"
    from_port   = 80
    to_port     = 80
    protocol    = "tcp"
    cidr_blocks = ["0.0.0.0/0"]
  }

  egress {
    description = "PostgreSQL inside the VPC (enable_rds)"
    from_port   = 5432
    to_port     = 5432
    protocol    = "tcp"
    cidr_blocks = [var.vpc_cidr]
  }
}

# ---------------------------------------------------------------------------------------------------------------
# The VM and its data volume
# ---------------------------------------------------------------------------------------------------------------

resource "aws_iam_role" "vm" {
  name = "${var.name}-vm"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "ec2.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

# Session Manager instead of SSH (no port 22 open).
resource "aws_iam_role_policy_attachment" "vm_ssm" {
  role       = aws_iam_role.vm.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/AmazonSSMManagedInstanceCore"
}

data "aws_iam_policy_document" "vm" {
  statement {
    sid       = "Secrets"
    actions   = ["secretsmanager:GetSecretValue"]
    resources = concat([aws_secretsmanager_secret.llm_api_key.arn, aws_secretsmanager_secret.api_key.arn], aws_secretsmanager_secret.database_url[*].arn)
  }
  statement {
    sid       = "Key"
    actions   = ["kms:Decrypt"]
    resources = [aws_kms_key.main.arn]
  }
  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents", "logs:DescribeLogStreams"]
    resources = ["${aws_cloudwatch_log_group.nova.arn}:*"]
  }
  dynamic "statement" {
    for_each = local.ecr_registry == "" ? [] : [1]
    content {
      sid       = "PullImage"
      actions   = ["ecr:GetAuthorizationToken", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer", "ecr:BatchCheckLayerAvailability"]
      resources = ["*"]
    }
  }
}

resource "aws_iam_role_policy" "vm" {
  name   = "nova"
  role   = aws_iam_role.vm.id
  policy = data.aws_iam_policy_document.vm.json
}

resource "aws_iam_instance_profile" "vm" {
  name = "${var.name}-vm"
  role = aws_iam_role.vm.name
}

resource "aws_ebs_volume" "data" {
  availability_zone = var.availability_zones[0]
  size              = var.data_volume_gb
  type              = "gp3"
  encrypted         = true
  kms_key_id        = aws_kms_key.main.arn
  tags              = { Name = "${var.name}-data", Snapshot = "${var.name}-daily" }
}

resource "aws_instance" "nova" {
  ami                         = data.aws_ssm_parameter.al2023_ami.value
  instance_type               = var.instance_type
  subnet_id                   = aws_subnet.public.id
  vpc_security_group_ids      = [aws_security_group.vm.id]
  iam_instance_profile        = aws_iam_instance_profile.vm.name
  associate_public_ip_address = false
  ebs_optimized               = true
  monitoring                  = true

  # Only the host reaches the instance metadata (hop limit 1): the container gets no instance credentials.
  metadata_options {
    http_endpoint               = "enabled"
    http_tokens                 = "required"
    http_put_response_hop_limit = 1
  }

  root_block_device {
    volume_size = var.root_volume_gb
    volume_type = "gp3"
    encrypted   = true
    kms_key_id  = aws_kms_key.main.arn
  }

  user_data_replace_on_change = true
  user_data = templatefile("${path.module}/user-data.sh.tftpl", {
    region                  = var.region
    container_image         = var.container_image
    ecr_registry            = local.ecr_registry
    data_volume_id          = aws_ebs_volume.data.id
    domain_name             = var.domain_name
    llm_base_url            = var.llm_base_url
    llm_model               = var.llm_model
    llm_api_key_secret_arn  = aws_secretsmanager_secret.llm_api_key.arn
    api_key_secret_arn      = aws_secretsmanager_secret.api_key.arn
    database_url_secret_arn = var.enable_rds ? aws_secretsmanager_secret.database_url[0].arn : ""
    log_group               = aws_cloudwatch_log_group.nova.name
  })

  tags = { Name = var.name }

  lifecycle {
    ignore_changes = [ami]
  }

  # NOVA's first start reads these secrets.
  depends_on = [aws_secretsmanager_secret_version.api_key, aws_secretsmanager_secret_version.llm_api_key]
}

resource "aws_volume_attachment" "data" {
  device_name = "/dev/sdf"
  volume_id   = aws_ebs_volume.data.id
  instance_id = aws_instance.nova.id
}

resource "aws_eip" "nova" {
  domain   = "vpc"
  instance = aws_instance.nova.id
  tags     = { Name = var.name }
}

# Daily snapshots of the data volume (the SQLite file is written with a write-ahead log; a crash-consistent
# snapshot restores like a power cut, which SQLite survives).
resource "aws_iam_role" "dlm" {
  count = var.snapshot_retention_days > 0 ? 1 : 0

  name = "${var.name}-vm-snapshots"
  assume_role_policy = jsonencode({
    Version = "2012-10-17"
    Statement = [{
      Effect    = "Allow"
      Principal = { Service = "dlm.amazonaws.com" }
      Action    = "sts:AssumeRole"
    }]
  })
}

resource "aws_iam_role_policy_attachment" "dlm" {
  count = var.snapshot_retention_days > 0 ? 1 : 0

  role       = aws_iam_role.dlm[0].name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AWSDataLifecycleManagerServiceRole"
}

resource "aws_dlm_lifecycle_policy" "data" {
  count = var.snapshot_retention_days > 0 ? 1 : 0

  description        = "NOVA data volume, daily"
  execution_role_arn = aws_iam_role.dlm[0].arn
  state              = "ENABLED"

  policy_details {
    resource_types = ["VOLUME"]
    target_tags    = { Snapshot = "${var.name}-daily" }

    schedule {
      name      = "daily"
      copy_tags = true

      create_rule {
        interval      = 24
        interval_unit = "HOURS"
        times         = ["03:00"]
      }

      retain_rule {
        count = var.snapshot_retention_days
      }
    }
  }
}

# ---------------------------------------------------------------------------------------------------------------
# Secrets and logs
# ---------------------------------------------------------------------------------------------------------------

resource "aws_secretsmanager_secret" "llm_api_key" {
  #checkov:skip=CKV2_AWS_57:A model provider's key is rotated at the provider; put the new value with `aws secretsmanager put-secret-value` and restart nova.service.
  name_prefix             = "${var.name}/vm-llm-api-key-"
  description             = "NOVA_LLM_API_KEY (a placeholder until you put the real one)"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "llm_api_key" {
  secret_id     = aws_secretsmanager_secret.llm_api_key.id
  secret_string = "unset"

  lifecycle {
    ignore_changes = [secret_string]
  }
}

# The API key of the tenant `default`: the VM fetches it into a root-only file, and NOVA adds it at start
# (NOVA_API_KEY_FILE) when it is not there yet, so it never answers beyond loopback without a key. Its value is
# in the Terraform state; read it with the api_key_command output.
resource "random_password" "api_key" {
  length  = 48
  special = false
}

resource "aws_secretsmanager_secret" "api_key" {
  #checkov:skip=CKV2_AWS_57:A NOVA API key is rotated with `nova keys create` and `nova keys revoke`, not by a rotation Lambda.
  name_prefix             = "${var.name}/vm-api-key-"
  description             = "NOVA_API_KEY: the API key (nova_...) of the tenant default"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

resource "aws_secretsmanager_secret_version" "api_key" {
  secret_id     = aws_secretsmanager_secret.api_key.id
  secret_string = "nova_${random_password.api_key.result}"
}

resource "aws_cloudwatch_log_group" "nova" {
  #checkov:skip=CKV_AWS_338:Retention is var.log_retention_days (30 days by default, for cost); raise it to 365 where policy asks for a year.
  name              = "/${var.name}/vm"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.main.arn
}

resource "aws_cloudwatch_log_group" "flow_logs" {
  #checkov:skip=CKV_AWS_338:VPC flow logs of rejected traffic, kept 14 days for cost.
  name              = "/${var.name}/vm-flow-logs"
  retention_in_days = 14
  kms_key_id        = aws_kms_key.main.arn
}

# ---------------------------------------------------------------------------------------------------------------
# Optional RDS PostgreSQL (var.enable_rds)
# ---------------------------------------------------------------------------------------------------------------

resource "aws_security_group" "db" {
  count = var.enable_rds ? 1 : 0

  name        = "${var.name}-vm-db"
  description = "NOVA PostgreSQL: from the VM"
  vpc_id      = aws_vpc.main.id

  ingress {
    description     = "PostgreSQL"
    from_port       = 5432
    to_port         = 5432
    protocol        = "tcp"
    security_groups = [aws_security_group.vm.id]
  }
}

resource "aws_db_subnet_group" "main" {
  count = var.enable_rds ? 1 : 0

  name       = "${var.name}-vm"
  subnet_ids = aws_subnet.private[*].id
}

resource "aws_db_parameter_group" "main" {
  count = var.enable_rds ? 1 : 0

  name_prefix = "${var.name}-vm-pg16-"
  family      = "postgres16"

  parameter {
    name  = "log_min_duration_statement"
    value = "1000"
  }

  parameter {
    name  = "log_statement"
    value = "ddl"
  }

  # TLS only: NOVA_DATABASE_URL asks for sslmode=require.
  parameter {
    name  = "rds.force_ssl"
    value = "1"
  }

  lifecycle {
    create_before_destroy = true
  }
}

resource "random_password" "db" {
  count = var.enable_rds ? 1 : 0

  length  = 32
  special = false
}

resource "aws_db_instance" "main" {
  #checkov:skip=CKV_AWS_157:A single-VM deployment has a single-AZ database; use the aws-scaled shape for Multi-AZ.
  #checkov:skip=CKV_AWS_353:Performance Insights is not offered on the small instance classes this shape uses.
  #checkov:skip=CKV_AWS_118:Enhanced monitoring adds a role and per-second metrics a single-VM deployment does not need; the basic RDS metrics remain.
  count = var.enable_rds ? 1 : 0

  identifier     = "${var.name}-vm"
  engine         = "postgres"
  engine_version = "16"
  instance_class = var.db_instance_class

  db_name  = "nova"
  username = "nova"
  password = random_password.db[0].result

  allocated_storage     = var.db_allocated_storage_gb
  max_allocated_storage = var.db_allocated_storage_gb * 5
  storage_type          = "gp3"
  storage_encrypted     = true
  kms_key_id            = aws_kms_key.main.arn

  multi_az               = false
  db_subnet_group_name   = aws_db_subnet_group.main[0].name
  vpc_security_group_ids = [aws_security_group.db[0].id]
  parameter_group_name   = aws_db_parameter_group.main[0].name
  publicly_accessible    = false

  backup_retention_period   = var.db_backup_retention_days
  copy_tags_to_snapshot     = true
  deletion_protection       = var.db_deletion_protection
  skip_final_snapshot       = !var.db_deletion_protection
  final_snapshot_identifier = "${var.name}-vm-final"

  auto_minor_version_upgrade          = true
  iam_database_authentication_enabled = true
  enabled_cloudwatch_logs_exports     = ["postgresql", "upgrade"]
}

resource "aws_secretsmanager_secret" "database_url" {
  #checkov:skip=CKV2_AWS_57:Rotating the password needs a rotation Lambda and a restart of NOVA, which reads NOVA_DATABASE_URL_FILE once at start.
  count = var.enable_rds ? 1 : 0

  name_prefix             = "${var.name}/vm-database-url-"
  description             = "NOVA_DATABASE_URL: postgres://nova:PASSWORD@HOST:5432/nova?sslmode=require"
  kms_key_id              = aws_kms_key.main.arn
  recovery_window_in_days = 7
}

# TLS: sslmode=require encrypts without verifying the server, whose certificate is signed by the RDS CAs (not
# among the system's roots); verify-full needs the RDS bundle on the VM, mounted into the container, and
# sslrootcert=PATH added here.
resource "aws_secretsmanager_secret_version" "database_url" {
  count = var.enable_rds ? 1 : 0

  secret_id     = aws_secretsmanager_secret.database_url[0].id
  secret_string = "postgres://nova:${random_password.db[0].result}@${aws_db_instance.main[0].address}:${aws_db_instance.main[0].port}/nova?sslmode=require"
}
