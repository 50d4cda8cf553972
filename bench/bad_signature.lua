-- wrk script of bench/run: the push of post.lua with a wrong X-Hub-Signature-256 (same length,
-- one hex digit changed), to measure how fast a server refuses forged requests.
BENCH_BAD_SIGNATURE = true
dofile(os.getenv("BENCH_DIR") .. "/post.lua")
