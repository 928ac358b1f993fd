// The block pool (model/kv_cache.h) and the prefix cache over it: allocation, reference counts,
// copy on write, eviction order, namespaces, and hash collisions that must never give a wrong
// block.
#include "runtime/prefix_cache.h"

#include <gtest/gtest.h>

#include <map>
#include <random>

#include "base/error.h"

namespace dsv3 {
namespace {

CacheLayout layout(int64_t block_size, CacheDtype dt = CacheDtype::F32) {
  return CacheLayout{.n_layers = 2, .row = 3, .block_size = block_size, .dtype = dt};
}

std::vector<float> row_values(float v) { return {v, v + 0.5f, -v}; }

float read(const SequenceCache& c, int64_t il, int64_t pos) {
  float tmp[3];
  return c.view(il, pos + 1).row_f32(pos, 3, tmp)[0];
}

// Writes positions [from, to) of every layer with value pos * 10 + layer.
void fill(SequenceCache& c, int64_t from, int64_t to) {
  for (int64_t p = from; p < to; ++p) {
    ASSERT_TRUE(c.try_make_writable(p));
    for (int64_t il = 0; il < c.n_layers(); ++il) {
      c.write_row(il, p, row_values(float(p * 10 + il)).data());
      c.mark_written(il, p);
    }
  }
}

TEST(BlockPool, FixedPoolHandsOutEachBlockOnceAndRefusesPastItsSize) {
  BlockPool pool(layout(4), 3);
  EXPECT_EQ(pool.n_free(), 3);
  const int32_t a = pool.allocate(), b = pool.allocate(), c = pool.allocate();
  EXPECT_NE(a, b);
  EXPECT_NE(b, c);
  EXPECT_NE(a, c);
  EXPECT_EQ(pool.allocate(), -1);
  EXPECT_EQ(pool.n_used(), 3);
  pool.retain(b);
  pool.release(b);
  EXPECT_EQ(pool.n_used(), 3);
  pool.release(b);
  EXPECT_EQ(pool.n_free(), 1);
  EXPECT_EQ(pool.allocate(), b);
  EXPECT_THROW(BlockPool(layout(0), 1), Error);
}

TEST(BlockPool, GrowablePoolKeepsRowsWhenItGrows) {
  auto pool = std::make_shared<BlockPool>(layout(2), 0);
  SequenceCache c(pool);
  fill(c, 0, 100);  // 50 blocks: several growths
  for (int64_t p = 0; p < 100; ++p) EXPECT_EQ(read(c, 1, p), float(p * 10 + 1)) << p;
  EXPECT_GE(pool->n_blocks(), 50);
}

TEST(BlockPool, Bf16RowsAreRoundedToNearestEvenAndHalfTheBytes) {
  auto f32 = std::make_shared<BlockPool>(layout(4, CacheDtype::F32), 1);
  auto bf16 = std::make_shared<BlockPool>(layout(4, CacheDtype::BF16), 1);
  EXPECT_EQ(bf16->layout().token_bytes() * 2, f32->layout().token_bytes());
  EXPECT_EQ(bf16->bytes() * 2, f32->bytes());
  SequenceCache c(bf16);
  ASSERT_TRUE(c.try_make_writable(0));
  const float v[3] = {1.0f + 0x1p-9f, 1.0f + 3 * 0x1p-9f, -2.5f};  // ties: to even (1, 1 + 2^-7... )
  c.write_row(0, 0, v);
  c.mark_written(0, 0);
  float tmp[3];
  const float* got = c.view(0, 1).row_f32(0, 3, tmp);
  EXPECT_EQ(got[0], 1.0f);
  EXPECT_EQ(got[1], 1.0f + 0x1p-7f);
  EXPECT_EQ(got[2], -2.5f);
}

TEST(SequenceCache, CopiesShareBlocksAndAWriteCopiesTheSharedBlock) {
  auto pool = std::make_shared<BlockPool>(layout(4), 8);
  SequenceCache a(pool);
  fill(a, 0, 6);  // blocks 0 (full) and 1 (2 rows)
  SequenceCache b(a);
  EXPECT_EQ(pool->n_used(), 2);
  EXPECT_EQ(a.blocks()[1], b.blocks()[1]);
  EXPECT_EQ(b.blocks_to_write(6, 7), 1);  // the shared partial block is copied
  fill(b, 6, 7);
  EXPECT_NE(a.blocks()[1], b.blocks()[1]);
  EXPECT_EQ(a.blocks()[0], b.blocks()[0]);
  EXPECT_EQ(pool->n_used(), 3);
  // b's copy holds a's rows 4 and 5, and its own 6; a never saw 6.
  EXPECT_EQ(read(b, 0, 5), 50.0f);
  EXPECT_EQ(read(b, 1, 6), 61.0f);
  EXPECT_EQ(a.length(0), 6);
  // Rewriting a shared position (a rollback, say) copies too; the other keeps its row.
  a.truncate(2);
  ASSERT_TRUE(a.try_make_writable(2));
  const auto nine = row_values(9);
  a.write_row(0, 2, nine.data());
  EXPECT_EQ(read(b, 0, 2), 20.0f);
  EXPECT_EQ(read(a, 0, 2), 9.0f);
}

TEST(SequenceCache, FixedPoolRunsOutWithANamedError) {
  auto pool = std::make_shared<BlockPool>(layout(4), 2);
  SequenceCache a(pool);
  EXPECT_TRUE(a.try_reserve(8));
  EXPECT_FALSE(a.try_reserve(9));
  try {
    a.reserve(9);
    FAIL();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("pool is full"), std::string::npos) << e.what();
  }
  a.clear();
  EXPECT_EQ(pool->n_free(), 2);
}

// The test's own record of what each indexed block holds: its whole token prefix.
struct Indexed {
  PrefixCache& pc;
  uint64_t seed;
  std::map<int32_t, std::vector<int32_t>> prefix_of;

  // Writes `tokens` into a fresh cache and indexes its full blocks, as the scheduler does.
  SequenceCache run(const std::shared_ptr<BlockPool>& pool, const std::vector<int32_t>& tokens) {
    const int64_t bs = pool->block_size();
    std::vector<uint64_t> keys;
    SequenceCache c(pool);
    const auto hit = pc.match(seed, tokens, int64_t(tokens.size()), &keys);
    c.adopt(hit, int64_t(hit.size()) * bs, c.n_layers());
    for (int32_t b : hit) pool->release(b);
    fill(c, int64_t(hit.size()) * bs, int64_t(tokens.size()));
    for (int64_t k = int64_t(keys.size()); (k + 1) * bs <= int64_t(tokens.size()); ++k) {
      const int32_t blk = c.blocks()[size_t(k)];
      keys.push_back(pc.insert(seed, k ? keys[size_t(k - 1)] : 0, k ? c.blocks()[size_t(k - 1)] : -1,
                               std::span<const int32_t>(tokens).subspan(size_t(k * bs), size_t(bs)), blk));
      if (pc.indexed(blk)) prefix_of[blk] = {tokens.begin(), tokens.begin() + (k + 1) * bs};
    }
    return c;
  }
};

TEST(PrefixCache, ASharedPrefixIsTakenByReferenceAndKeptAfterItsRequestEnds) {
  auto pool = std::make_shared<BlockPool>(layout(4), 16);
  PrefixCache pc(pool, 7);
  Indexed ix{pc, pc.chain_seed("")};
  const std::vector<int32_t> first = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10};
  {
    SequenceCache c = ix.run(pool, first);
    EXPECT_EQ(pc.n_indexed(), 2);
  }
  EXPECT_EQ(pool->n_used(), 0);
  EXPECT_EQ(pool->n_evictable(), 2);  // kept for reuse
  std::vector<int32_t> second = {1, 2, 3, 4, 5, 6, 7, 8, 99};
  const auto hit = pc.match(ix.seed, second, int64_t(second.size()) - 1);
  ASSERT_EQ(hit.size(), 2u);
  EXPECT_EQ(pool->n_used(), 2);
  EXPECT_EQ(pool->refs(hit[0]), 1);
  // Only whole blocks, and no more than max_tokens.
  const auto short_hit = pc.match(ix.seed, second, 7);
  EXPECT_EQ(short_hit.size(), 1u);
  for (int32_t b : hit) pool->release(b);
  for (int32_t b : short_hit) pool->release(b);
  // A different first block misses everything.
  second[0] = 0;
  EXPECT_TRUE(pc.match(ix.seed, second, 9).empty());
  EXPECT_EQ(pool->n_used(), 0);
}

TEST(PrefixCache, SaltsAndNamespacesNeverShare) {
  auto pool = std::make_shared<BlockPool>(layout(4), 16);
  PrefixCache pc(pool, prefix_namespace("model-a", CacheDtype::F32));
  Indexed ix{pc, pc.chain_seed("alice")};
  const std::vector<int32_t> t = {1, 2, 3, 4, 5, 6, 7, 8, 9};
  SequenceCache c = ix.run(pool, t);
  EXPECT_EQ(pc.match(pc.chain_seed("alice"), t, 8).size(), 2u);
  for (int32_t b : c.blocks().first(2)) pool->release(b);  // the match's references
  EXPECT_TRUE(pc.match(pc.chain_seed("bob"), t, 8).empty());
  EXPECT_TRUE(pc.match(pc.chain_seed(""), t, 8).empty());
  EXPECT_NE(prefix_namespace("model-a", CacheDtype::F32), prefix_namespace("model-a", CacheDtype::BF16));
  EXPECT_NE(prefix_namespace("model-a", CacheDtype::F32), prefix_namespace("model-b", CacheDtype::F32));
}

TEST(PrefixCache, EvictsLeastRecentlyReleasedAndARequestsLastBlocksFirst) {
  auto pool = std::make_shared<BlockPool>(layout(2), 6);
  PrefixCache pc(pool, 1);
  Indexed ix{pc, pc.chain_seed("")};
  const std::vector<int32_t> a = {1, 2, 3, 4, 5, 6}, b = {7, 8, 9, 10};
  std::vector<int32_t> a_blocks, b_blocks;
  {
    SequenceCache ca = ix.run(pool, a);
    a_blocks.assign(ca.blocks().begin(), ca.blocks().end());
  }
  {
    SequenceCache cb = ix.run(pool, b);
    b_blocks.assign(cb.blocks().begin(), cb.blocks().end());
  }
  ASSERT_EQ(pool->n_evictable(), 5);
  EXPECT_EQ(pool->n_free(), 1);
  // New blocks: the free one first, then a's last block (a released before b; its tail first).
  SequenceCache fresh(pool);
  ASSERT_TRUE(fresh.try_reserve(2 * 2));
  EXPECT_FALSE(pc.indexed(a_blocks[2]));
  EXPECT_TRUE(pc.indexed(a_blocks[1]));
  ASSERT_TRUE(fresh.try_reserve(3 * 2));
  EXPECT_FALSE(pc.indexed(a_blocks[1]));
  EXPECT_TRUE(pc.indexed(a_blocks[0]));
  EXPECT_TRUE(pc.indexed(b_blocks[0]));
  // a's first block still matches; its second is gone.
  const auto hit = pc.match(ix.seed, a, 6);
  EXPECT_EQ(hit.size(), 1u);
  for (int32_t x : hit) pool->release(x);
  // Referenced blocks are never evicted: with everything held, allocation fails.
  SequenceCache more(pool);
  EXPECT_TRUE(more.try_reserve(3 * 2));
  EXPECT_EQ(pool->n_available(), 0);
  EXPECT_FALSE(more.try_reserve(4 * 2));
}

TEST(PrefixCache, CollidingKeysNeverGiveAWrongBlock) {
  // Keys of 2 bits: nearly every block collides with another. Every block a match returns must
  // hold exactly the query's prefix (the test's own record), whatever was indexed before.
  auto pool = std::make_shared<BlockPool>(layout(2), 4096);
  PrefixCache pc(pool, 3, /*key_mask=*/0x3);
  Indexed ix{pc, pc.chain_seed("")};
  std::mt19937 rng(5);
  std::vector<SequenceCache> live;
  int64_t hits = 0;
  for (int i = 0; i < 300; ++i) {
    std::vector<int32_t> t(size_t(2 + rng() % 9));
    for (auto& x : t) x = int32_t(rng() % 3);  // a small alphabet: many shared prefixes
    std::vector<uint64_t> keys;
    const auto hit = pc.match(ix.seed, t, int64_t(t.size()), &keys);
    for (size_t k = 0; k < hit.size(); ++k) {
      ASSERT_TRUE(ix.prefix_of.count(hit[k]));
      const auto& want = ix.prefix_of[hit[k]];
      ASSERT_EQ(want, std::vector<int32_t>(t.begin(), t.begin() + int64_t(want.size())));
      ASSERT_EQ(int64_t(want.size()), int64_t(k + 1) * 2);
      ++hits;
    }
    for (int32_t b : hit) pool->release(b);
    live.push_back(ix.run(pool, t));
    if (live.size() > 20) live.erase(live.begin());
  }
  EXPECT_GT(hits, 0);
  live.clear();
  EXPECT_EQ(pool->n_used(), 0);  // every reference returned
}

TEST(PrefixCache, AChildIndexedAfterACollidingParentIsNotMatchedUnderTheOtherParent) {
  // Keys of 2 bits. Chain A indexes a1; chain B's first block b1 has a1's key (found by search)
  // but other tokens, so it is not indexed; B's second block b2 must then not become reachable
  // behind a1 (its rows were computed after b1, not a1).
  auto pool = std::make_shared<BlockPool>(layout(2), 16);
  PrefixCache pc(pool, 3, /*key_mask=*/0x3);
  Indexed ix{pc, pc.chain_seed("")};
  const std::vector<int32_t> a1 = {1, 1};
  const uint64_t k1 = pc.block_key(ix.seed, 0, a1);
  std::vector<int32_t> b1, b2;
  for (int32_t t = 2; b1.empty(); ++t)
    if (pc.block_key(ix.seed, 0, std::vector<int32_t>{t, t}) == k1) b1 = {t, t};
  for (int32_t t = 2; b2.empty(); ++t)
    if (pc.block_key(ix.seed, k1, std::vector<int32_t>{t, 7}) != k1) b2 = {t, 7};
  SequenceCache ca = ix.run(pool, a1);
  SequenceCache cb = ix.run(pool, {b1[0], b1[1], b2[0], b2[1]});
  EXPECT_FALSE(pc.indexed(cb.blocks()[0]));
  EXPECT_FALSE(pc.indexed(cb.blocks()[1]));
  const std::vector<int32_t> q = {1, 1, b2[0], b2[1], 0};
  const auto hit = pc.match(ix.seed, q, 4);
  ASSERT_EQ(hit.size(), 1u);
  EXPECT_EQ(hit[0], ca.blocks()[0]);
  pool->release(hit[0]);
}

}  // namespace
}  // namespace dsv3
