# keelctl's runbook store: the lock, the journals and the audit trail of rotations, failovers and
# reconciliations. A DynamoDB global table with a replica in every region, so a runbook can be
# resumed from any region. Its name and keys are keel-names.json's runbook_store (the code's), so
# keelctl's `[runbook] table` finds it; keelctl creates the table only when it is missing (locally).

locals {
  names = jsondecode(file(var.keel_names_file))
  store = local.names.runbook_store
}

data "aws_region" "current" {}

resource "aws_dynamodb_table" "runbooks" {
  name                        = local.store.table
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = local.store.partition_key
  range_key                   = local.store.sort_key
  deletion_protection_enabled = true
  # Global tables replicate through the table's stream.
  stream_enabled   = true
  stream_view_type = "NEW_AND_OLD_IMAGES"

  attribute {
    name = local.store.partition_key
    type = "S"
  }

  attribute {
    name = local.store.sort_key
    type = "S"
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = var.kms_key_arns[data.aws_region.current.name]
  }

  dynamic "replica" {
    for_each = { for region, key in var.kms_key_arns : region => key if region != data.aws_region.current.name }
    content {
      region_name            = replica.key
      kms_key_arn            = replica.value
      point_in_time_recovery = true
      propagate_tags         = true
    }
  }

  lifecycle {
    prevent_destroy = true
  }
}
