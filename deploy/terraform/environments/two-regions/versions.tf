terraform {
  # 1.11 for write-only attributes and ephemeral values (the Aurora master passwords never reach the
  # state); 1.11.1 fixes their serialisation.
  required_version = ">= 1.11.1, < 2.0.0"

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "~> 5.100"
    }
    random = {
      source  = "hashicorp/random"
      version = "~> 3.7"
    }
  }

  # Remote state: an S3 bucket (versioned, encrypted) with a DynamoDB table for the lock, in an
  # account and region of their own. Partial configuration: the values are given at init,
  #   terraform init -backend-config=backend.hcl
  # with backend.hcl as in backend.hcl.example. (Terraform 1.11 can also lock in S3 itself:
  # use_lockfile = true instead of dynamodb_table.)
  backend "s3" {}
}
