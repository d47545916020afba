variable "region" {
  description = "AWS region to deploy NOVA into."
  type        = string
  default     = "us-east-1"
}

variable "availability_zones" {
  description = "Two availability zones of var.region: the VM runs in the first; an RDS subnet group needs both."
  type        = list(string)
  default     = ["us-east-1a", "us-east-1b"]

  validation {
    condition     = length(var.availability_zones) == 2
    error_message = "Give exactly 2 availability zones."
  }
}

variable "name" {
  description = "Name prefix of every resource (lowercase letters, digits and hyphens)."
  type        = string
  default     = "nova"

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,20}$", var.name))
    error_message = "name must be 2 to 21 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "tags" {
  description = "Extra tags put on every resource."
  type        = map(string)
  default     = {}
}

variable "container_image" {
  description = "The NOVA container image (Debian slim runtime with tesseract, poppler and python3), e.g. 123456789012.dkr.ecr.us-east-1.amazonaws.com/nova:0.1.0. A private ECR image is pulled with the instance role."
  type        = string
}

variable "instance_type" {
  description = "EC2 instance type. NOVA runs the API and the workers in one process; OCR and the sandbox like 2 vCPUs and 4 GiB."
  type        = string
  default     = "t3.medium"
}

variable "vpc_cidr" {
  description = "CIDR block of the VPC."
  type        = string
  default     = "10.41.0.0/16"
}

variable "root_volume_gb" {
  description = "Root EBS volume in GiB (OS, container image, jails' scratch space)."
  type        = number
  default     = 20
}

variable "data_volume_gb" {
  description = "EBS volume in GiB for NOVA's data directory: the SQLite database and the documents' bytes."
  type        = number
  default     = 50
}

variable "snapshot_retention_days" {
  description = "Daily snapshots of the data volume to keep (0: no snapshot policy)."
  type        = number
  default     = 7
}

variable "domain_name" {
  description = "Host name that points at the VM's Elastic IP. When set, Caddy serves NOVA on 443 with a certificate it obtains from Let's Encrypt (TLS-ALPN challenge); when empty, NOVA answers plain HTTP on 8080 to var.ingress_cidrs."
  type        = string
  default     = ""
}

variable "ingress_cidrs" {
  description = "CIDR blocks allowed to reach NOVA (443 with a domain name, else 8080)."
  type        = list(string)
  default     = ["0.0.0.0/0"]
}

variable "enable_rds" {
  description = "Keep NOVA's database in RDS PostgreSQL instead of the SQLite file on the data volume (documents' bytes stay on the volume). The database takes TLS connections only (rds.force_ssl=1), and NOVA connects with sslmode=require."
  type        = bool
  default     = false
}

variable "db_instance_class" {
  description = "RDS instance class (with enable_rds)."
  type        = string
  default     = "db.t4g.micro"
}

variable "db_allocated_storage_gb" {
  description = "RDS storage in GiB (with enable_rds)."
  type        = number
  default     = 20
}

variable "db_backup_retention_days" {
  description = "Days of RDS automated backups (with enable_rds)."
  type        = number
  default     = 7
}

variable "db_deletion_protection" {
  description = "Protect the RDS database against deletion (and take a final snapshot when it is deleted)."
  type        = bool
  default     = true
}

variable "llm_base_url" {
  description = "NOVA_LLM_BASE_URL: an OpenAI-compatible Chat Completions endpoint (empty: rules only, no model)."
  type        = string
  default     = ""
}

variable "llm_model" {
  description = "NOVA_LLM_MODEL: the model name."
  type        = string
  default     = ""
}

variable "log_retention_days" {
  description = "Days the VM's CloudWatch log group keeps NOVA's logs."
  type        = number
  default     = 30
}
