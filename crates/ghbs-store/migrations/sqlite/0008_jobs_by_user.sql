-- Job listings page through a user's jobs in id order (`WHERE user_id = $1 AND id > $2
-- ORDER BY id LIMIT $3`, issue 14): this index answers that as a range scan, already sorted.
CREATE INDEX jobs_user_id ON jobs (user_id, id);
