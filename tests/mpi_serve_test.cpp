// `dsv3 serve` under `mpirun -np 2` (issue 15: rank 0 holds HTTP and the scheduler; every rank
// runs each step, runtime/step_mirror.h). Greedy replies over HTTP (plain, streamed, two at once,
// n = 2 with its copy-on-write blocks, a prefix-cache hit, prompts in chunks) carry the same
// tokens as the single-process server's; SIGTERM to rank 0 stops every rank with exit 0; a
// killed rank ends the whole job within 10 s; --speculative is refused. Requests go through
// curl. Skips when mpirun or curl is absent, or models/default is missing.
#include <gtest/gtest.h>

#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include <nlohmann/json.hpp>

#include "tests/cli_util.h"

extern char** environ;

namespace dsv3 {
namespace {

namespace fs = std::filesystem;
using Clock = std::chrono::steady_clock;

test::CommandResult run_shell(const std::string& cmd) { return test::run_shell_line(cmd + " 2>&1"); }

const std::string kMpirun = "mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp -np 2 ";
const std::string kModel = "models/default";
// Small blocks and steps, so that a short prompt fills blocks (prefix hits), arrives in chunks
// and shares steps with the other request's decode; a small pool per rank.
const std::string kServeFlags =
    " serve --model " + kModel + " --port 0 --threads 1 --quiet --no-web --block-size 16 --max-step-tokens 16 "
    "--kv-cache-mb 16";

struct TmpDir {
  fs::path path;
  TmpDir() {
    path = fs::temp_directory_path() / ("dsv3_mpi_serve_test_" + std::to_string(::getpid()) + "_" +
                                        std::to_string(Clock::now().time_since_epoch().count()));
    fs::create_directories(path);
  }
  ~TmpDir() { fs::remove_all(path); }
  std::string file(const std::string& name) const { return (path / name).string(); }
};

std::string read_text(const std::string& path) {
  std::ifstream in(path);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

// A command run in the background in a process group of its own (sh -c 'exec CMD >LOG 2>&1'),
// killed with its group at scope end if still running.
class Background {
 public:
  Background(const std::string& cmd, std::string log) : log_(std::move(log)) {
    const std::string line = "exec " + cmd + " > " + log_ + " 2>&1";
    posix_spawnattr_t at;
    posix_spawnattr_init(&at);
    posix_spawnattr_setflags(&at, POSIX_SPAWN_SETPGROUP);
    posix_spawnattr_setpgroup(&at, 0);
    const char* argv[] = {"/bin/sh", "-c", line.c_str(), nullptr};
    if (posix_spawn(&pid_, "/bin/sh", nullptr, &at, const_cast<char**>(argv), environ) != 0) pid_ = -1;
    posix_spawnattr_destroy(&at);
  }
  ~Background() {
    if (pid_ > 0 && !status_) {
      ::kill(-pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
    }
    // mpirun starts its ranks in process groups of their own: a hung job leaves them behind.
    for (const auto& f : pid_files_)
      if (const pid_t p = pid_t(std::atoi(read_text(f).c_str()));
          p > 0 && read_text("/proc/" + std::to_string(p) + "/cmdline").find("dsv3") != std::string::npos)
        ::kill(p, SIGKILL);
  }
  // Files holding the pids of processes to kill too at scope end (mpirun's ranks).
  void also_kill(std::vector<std::string> pid_files) { pid_files_ = std::move(pid_files); }
  pid_t pid() const { return pid_; }
  std::string log() const { return read_text(log_); }

  // The port of "dsv3 serve: http://HOST:PORT/v1" once logged; 0 when the process ended first or
  // timeout_s passed.
  int wait_port(double timeout_s) {
    const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (Clock::now() < end) {
      const std::string text = log();
      const std::string needle = "dsv3 serve: http://127.0.0.1:";
      if (const size_t at = text.find(needle); at != std::string::npos) return std::atoi(text.c_str() + at + needle.size());
      if (wait_exit(0)) return 0;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return 0;
  }
  // Its exit status (128 + signal when killed) once it ended within timeout_s.
  std::optional<int> wait_exit(double timeout_s) {
    const auto end = Clock::now() + std::chrono::duration<double>(timeout_s);
    while (!status_) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        status_ = WIFEXITED(st) ? WEXITSTATUS(st) : 128 + WTERMSIG(st);
        break;
      }
      if (Clock::now() >= end) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    }
    return status_;
  }

 private:
  pid_t pid_ = -1;
  std::string log_;
  std::optional<int> status_;
  std::vector<std::string> pid_files_;
};

// Whether process pid is gone (or a zombie nobody reaped yet).
bool process_gone(pid_t pid) {
  if (::kill(pid, 0) != 0) return true;
  const std::string stat = read_text("/proc/" + std::to_string(pid) + "/stat");
  const size_t paren = stat.rfind(')');
  return paren == std::string::npos || stat.substr(paren + 2, 1) == "Z";
}

// A wrapper that writes each rank's pid to DIR/rankR.pid and runs the command.
std::string pid_wrapper(const TmpDir& d) {
  const std::string script = d.file("pids.sh");
  std::ofstream(script) << "#!/bin/sh\necho $$ > " << d.path.string()
                        << "/rank$OMPI_COMM_WORLD_RANK.pid\nexec \"$@\"\n";
  fs::permissions(script, fs::perms::owner_all);
  return script;
}

pid_t read_pid(const TmpDir& d, int rank) { return pid_t(std::atoi(read_text(d.file("rank" + std::to_string(rank) + ".pid")).c_str())); }

nlohmann::json chat_body(const std::string& text, int max_tokens, bool stream, int n = 1) {
  nlohmann::json b = {{"model", "default"},
                      {"messages", {{{"role", "user"}, {"content", text}}}},
                      {"max_tokens", max_tokens},
                      {"temperature", 0},
                      {"n", n}};
  if (stream) b["stream"] = true;
  else b["logprobs"] = true;
  return b;
}

// One greedy reply as comparable text: per choice, its tokens (non-streaming: the logprobs'
// token strings; streaming: each chunk's content, one token per chunk) and finish reason.
struct Reply {
  std::vector<std::vector<std::string>> tokens;
  std::vector<std::string> finish;
  std::vector<std::vector<float>> logprobs;
  std::string raw;
};

Reply parse_reply(const std::string& raw, bool stream) {
  Reply r;
  r.raw = raw;
  auto choice = [&](size_t i) {
    if (r.tokens.size() <= i) {
      r.tokens.resize(i + 1);
      r.finish.resize(i + 1);
      r.logprobs.resize(i + 1);
    }
  };
  if (!stream) {
    const auto j = nlohmann::json::parse(raw, nullptr, false);
    if (j.is_discarded() || !j.contains("choices")) return r;
    for (const auto& c : j["choices"]) {
      const size_t i = c["index"].get<size_t>();
      choice(i);
      for (const auto& t : c["logprobs"]["content"]) {
        r.tokens[i].push_back(t["token"].get<std::string>());
        r.logprobs[i].push_back(t["logprob"].get<float>());
      }
      r.finish[i] = c["finish_reason"].get<std::string>();
    }
    return r;
  }
  std::istringstream in(raw);
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("data: {", 0) != 0) continue;
    const auto j = nlohmann::json::parse(line.substr(6), nullptr, false);
    if (j.is_discarded()) continue;
    for (const auto& c : j["choices"]) {
      const size_t i = c["index"].get<size_t>();
      choice(i);
      if (c["delta"].contains("content")) r.tokens[i].push_back(c["delta"]["content"].get<std::string>());
      if (!c["finish_reason"].is_null()) r.finish[i] = c["finish_reason"].get<std::string>();
    }
  }
  return r;
}

struct Request {
  nlohmann::json body;
  bool stream;
};

// The requests of one round: a plain reply; the same prompt again (a prefix-cache hit); n = 2
// (both choices share the prompt's last block, then copy it on write); a streamed reply; then two
// at once (one streamed), so that their prompt chunks and decodes share steps.
std::vector<Reply> send_round(const TmpDir& d, int port, const std::string& tag) {
  const std::string url = "http://127.0.0.1:" + std::to_string(port) + "/v1/chat/completions";
  const std::string long_prompt =
      "In the beginning God created the heaven and the earth. And the earth was without form, and void; and darkness "
      "was upon the face of the deep.";
  const std::vector<std::vector<Request>> rounds = {
      {{chat_body(long_prompt, 24, false), false}},
      {{chat_body(long_prompt, 24, false), false}},
      {{chat_body("hello there", 20, false, 2), false}},
      {{chat_body("count to ten", 24, true), true}},
      {{chat_body(long_prompt + " And God said", 32, false), false}, {chat_body("who are you", 32, true), true}},
  };
  std::vector<Reply> out;
  int k = 0;
  for (const auto& group : rounds) {
    std::string cmd;
    std::vector<std::string> outs;
    for (const Request& q : group) {
      const std::string body = d.file(tag + "_req" + std::to_string(k) + ".json");
      const std::string resp = d.file(tag + "_resp" + std::to_string(k) + ".txt");
      ++k;
      std::ofstream(body) << q.body.dump();
      cmd += "curl -s -N -m 30 -H 'content-type: application/json' --data-binary @" + body + " " + url + " > " +
             resp + " & ";
      outs.push_back(resp);
    }
    run_shell(cmd + "wait");
    bool answered = true;
    for (size_t i = 0; i < group.size(); ++i) {
      out.push_back(parse_reply(read_text(outs[i]), group[i].stream));
      answered = answered && !out.back().tokens.empty();
    }
    if (!answered) break;  // a hung server: one timeout is enough
  }
  return out;
}

class MpiServe : public ::testing::Test {
 protected:
  void SetUp() override {
    if (run_shell("command -v mpirun").exit_code != 0)
      GTEST_SKIP() << "mpirun not found (apt-get install openmpi-bin libopenmpi-dev)";
    if (run_shell("command -v curl").exit_code != 0) GTEST_SKIP() << "curl not found";
    if (!fs::exists(kModel + "/tokenizer.json")) GTEST_SKIP() << "models/default is missing (scripts/setup.sh makes it)";
  }
};

TEST_F(MpiServe, GreedyRepliesEqualTheSingleProcessServerAndSigtermToRankZeroStopsEveryRank) {
  TmpDir d;
  std::vector<Reply> want;
  {
    Background one(test::dsv3_bin() + kServeFlags, d.file("one.log"));
    const int port = one.wait_port(60);
    ASSERT_GT(port, 0) << one.log();
    want = send_round(d, port, "one");
    ::kill(one.pid(), SIGTERM);
    EXPECT_EQ(one.wait_exit(10), std::optional<int>(0)) << one.log();
  }
  Background two(kMpirun + pid_wrapper(d) + " " + test::dsv3_bin() + kServeFlags, d.file("two.log"));
  two.also_kill({d.file("rank0.pid"), d.file("rank1.pid")});
  const int port = two.wait_port(60);
  ASSERT_GT(port, 0) << two.log();
  const std::vector<Reply> got = send_round(d, port, "two");
  ASSERT_EQ(got.size(), want.size()) << "a request got no reply within 30 s\n" << two.log();
  for (size_t i = 0; i < want.size(); ++i) {
    SCOPED_TRACE("request " + std::to_string(i) + ": " + got[i].raw.substr(0, 400));
    ASSERT_FALSE(want[i].tokens.empty()) << want[i].raw;
    EXPECT_EQ(got[i].tokens, want[i].tokens);
    EXPECT_EQ(got[i].finish, want[i].finish);
    // The sharded logits differ from one process's only in the order of cross-rank sums.
    ASSERT_EQ(got[i].logprobs.size(), want[i].logprobs.size());
    float worst = 0;
    for (size_t c = 0; c < want[i].logprobs.size(); ++c)
      for (size_t t = 0; t < std::min(want[i].logprobs[c].size(), got[i].logprobs[c].size()); ++t)
        worst = std::max(worst, std::fabs(got[i].logprobs[c][t] - want[i].logprobs[c][t]));
    EXPECT_LE(worst, 1e-4f);
  }
  // SIGTERM to rank 0 alone: it finishes, tells the other rank to stop, and every rank exits 0.
  const pid_t rank0 = read_pid(d, 0), rank1 = read_pid(d, 1);
  ASSERT_GT(rank0, 0);
  ASSERT_GT(rank1, 0);
  ::kill(rank0, SIGTERM);
  EXPECT_EQ(two.wait_exit(10), std::optional<int>(0)) << two.log();
  EXPECT_TRUE(process_gone(rank0));
  EXPECT_TRUE(process_gone(rank1));
}

// A rank killed while a reply streams (a host lost): the whole job ends within 10 s, nothing
// hangs; the same when mpirun itself is interrupted.
TEST_F(MpiServe, AKilledRankOrAnInterruptedMpirunEndsEveryRankWithin10s) {
  for (const std::string what : {"kill -9 rank 1", "kill -9 rank 0", "SIGINT to mpirun", "SIGTERM to mpirun"}) {
    SCOPED_TRACE(what);
    TmpDir d;
    Background two(kMpirun + pid_wrapper(d) + " " + test::dsv3_bin() + kServeFlags, d.file("two.log"));
    two.also_kill({d.file("rank0.pid"), d.file("rank1.pid")});
    const int port = two.wait_port(60);
    ASSERT_GT(port, 0) << two.log();
    const pid_t rank0 = read_pid(d, 0), rank1 = read_pid(d, 1);
    ASSERT_GT(rank0, 0);
    ASSERT_GT(rank1, 0);
    // A reply that would run for minutes.
    std::ofstream(d.file("long.json")) << nlohmann::json{{"model", "default"},
                                                          {"prompt", "hello"},
                                                          {"max_tokens", 20000},
                                                          {"ignore_eos", true},
                                                          {"stream", true}}
                                              .dump();
    Background client("curl -s -N -m 60 -H 'content-type: application/json' --data-binary @" + d.file("long.json") +
                          " http://127.0.0.1:" + std::to_string(port) + "/v1/completions",
                      d.file("client.log"));
    std::this_thread::sleep_for(std::chrono::milliseconds(1500));
    ASSERT_NE(read_text(d.file("client.log")).find("data: "), std::string::npos)
        << "no token streamed yet: " << read_text(d.file("client.log")) << "\n" << two.log();
    const auto t0 = Clock::now();
    if (what == "kill -9 rank 1") ::kill(rank1, SIGKILL);
    if (what == "kill -9 rank 0") ::kill(rank0, SIGKILL);
    if (what == "SIGINT to mpirun") ::kill(two.pid(), SIGINT);
    if (what == "SIGTERM to mpirun") ::kill(two.pid(), SIGTERM);
    const auto status = two.wait_exit(10);
    const double s = std::chrono::duration<double>(Clock::now() - t0).count();
    ASSERT_TRUE(status.has_value()) << "mpirun still running after 10 s\n" << two.log();
    EXPECT_NE(*status, 0);
    EXPECT_LE(s, 10.0);
    std::printf("%s: mpirun exited with %d after %.1f s\n", what.c_str(), *status, s);
    // The ranks were mpirun's children: give the kernel a moment to reap them, then none is left.
    for (int i = 0; i < 50 && !(process_gone(rank0) && process_gone(rank1)); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(20));
    EXPECT_TRUE(process_gone(rank0));
    EXPECT_TRUE(process_gone(rank1));
  }
}

// Three long replies at once in a pool of 5 blocks: requests are preempted (their blocks given
// to others, recomputed later from the prefix cache), blocks are reused across sequences; the
// replies keep one process's greedy tokens, and rank 0 counts the preemptions.
TEST_F(MpiServe, PreemptionsInASmallPoolKeepTheSingleProcessGreedyReplies) {
  TmpDir d;
  const std::string flags = " serve --model " + kModel +
                            " --port 0 --threads 1 --quiet --no-web --block-size 256 --kv-cache-mb 1 "
                            "--max-step-tokens 64";
  auto round = [&](int port, const std::string& tag) {
    std::string cmd;
    for (int i = 0; i < 3; ++i) {
      const std::string body = d.file(tag + "_p" + std::to_string(i) + ".json");
      std::ofstream(body) << nlohmann::json{{"model", "default"},
                                            {"prompt", "And it came to pass " + std::to_string(i)},
                                            {"max_tokens", 600},
                                            {"ignore_eos", true},
                                            {"temperature", 0}}
                                 .dump();
      cmd += "curl -s -m 60 -H 'content-type: application/json' --data-binary @" + body + " http://127.0.0.1:" +
             std::to_string(port) + "/v1/completions > " + d.file(tag + "_r" + std::to_string(i) + ".json") + " & ";
    }
    run_shell(cmd + "wait");
    std::vector<std::string> texts;
    for (int i = 0; i < 3; ++i) {
      const auto j = nlohmann::json::parse(read_text(d.file(tag + "_r" + std::to_string(i) + ".json")), nullptr, false);
      texts.push_back(j.is_discarded() || !j.contains("choices") ? "" : j["choices"][0]["text"].get<std::string>());
    }
    const std::string metrics = run_shell("curl -s -m 10 http://127.0.0.1:" + std::to_string(port) + "/metrics").output;
    const size_t at = metrics.find("dsv3:num_preemptions_total{");
    const int preemptions = at == std::string::npos ? -1 : std::atoi(metrics.c_str() + metrics.find('}', at) + 1);
    return std::pair(texts, preemptions);
  };
  std::vector<std::string> want;
  {
    Background one(test::dsv3_bin() + flags, d.file("one.log"));
    const int port = one.wait_port(60);
    ASSERT_GT(port, 0) << one.log();
    want = round(port, "one").first;
  }
  Background two(kMpirun + pid_wrapper(d) + " " + test::dsv3_bin() + flags, d.file("two.log"));
  two.also_kill({d.file("rank0.pid"), d.file("rank1.pid")});
  const int port = two.wait_port(60);
  ASSERT_GT(port, 0) << two.log();
  const auto [got, preemptions] = round(port, "two");
  EXPECT_GT(preemptions, 0) << "the pool should have run out";
  for (int i = 0; i < 3; ++i) {
    EXPECT_GT(want[size_t(i)].size(), 1000u) << "reply " << i;
    EXPECT_EQ(got[size_t(i)], want[size_t(i)]) << "reply " << i;
  }
}

TEST_F(MpiServe, SpeculativeDecodingIsRefusedNamingTheFlag) {
  auto r = run_shell("timeout 60 " + kMpirun + test::dsv3_bin() + kServeFlags + " --speculative mtp");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("serve: --speculative mtp is not available under mpirun (2 ranks)"), std::string::npos)
      << r.output;
}

// A launch with a command per rank (`mpirun -np 1 A : -np 1 B`) can give the ranks different serve
// flags: the ones rank 0's steps depend on are compared before the server takes requests.
TEST_F(MpiServe, RanksGivenDifferentCacheFlagsStopNamingTheFlag) {
  const std::string one = "mpirun --allow-run-as-root --oversubscribe --mca btl self,vader,tcp -np 1 ";
  auto r = run_shell("timeout 60 " + one + test::dsv3_bin() + kServeFlags + " : -np 1 " + test::dsv3_bin() +
                     kServeFlags + " --kv-cache-dtype bf16");
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("rank 1 was given a different --kv-cache-dtype from rank 0's"), std::string::npos) << r.output;
  EXPECT_EQ(r.output.find("listening"), std::string::npos) << r.output;
}

}  // namespace
}  // namespace dsv3
