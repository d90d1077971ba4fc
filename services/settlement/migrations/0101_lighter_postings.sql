-- Postings carry no foreign keys. Checked row by row they were the settlement consumer's largest
-- cost: about a second per batch of 8,000 postings, two lookups each (measured with
-- pg_stat_statements at 1,000 legs/s; docs/benchmarks.md). Only the settlement service writes
-- postings, for accounts it has loaded and instructions it has just stored in the same transaction,
-- and `keelctl ledger verify` checks every posting's account and instruction.
ALTER TABLE postings DROP CONSTRAINT postings_instruction_id_fkey;
ALTER TABLE postings DROP CONSTRAINT postings_account_id_fkey;
-- Nothing reads postings by instruction but the verifier, which reads them all in order: the index
-- cost a write per posting for nothing.
DROP INDEX postings_by_instruction;
