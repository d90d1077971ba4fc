# Per application, its Aurora Global Database, made from the primary cluster where the application
# starts active (the aurora module). The secondaries in the other regions join it.
#
# Made from the primary rather than owning it so that the writer can move (switchover, failover,
# detach and promote, all keelctl's) without Terraform fighting it: the clusters ignore their
# global_cluster_identifier and replication_source_identifier. After a detach-and-promote that
# made a new global cluster, import it here (README, "After a failover").

resource "aws_rds_global_cluster" "this" {
  for_each                     = var.primary_clusters
  global_cluster_identifier    = var.global_cluster_identifiers[each.key]
  source_db_cluster_identifier = each.value.arn
  force_destroy                = false
  deletion_protection          = true

  lifecycle {
    prevent_destroy = true
  }
}
