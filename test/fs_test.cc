// Filesystem operations (fs/fs_ops.h) on every backend, and on io_uring with its path
// opcodes forced onto the blocking pool: stat (path, File, symlink), rename/unlink/mkdir/
// rmdir and their errnos, bad paths, read_dir, sync_dir, asynchronous open, a slow open
// that must not block the loop, and timeouts/cancellation that leak no descriptor.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <climits>
#include <condition_variable>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <functional>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "galay-kernel/runtime/detail/blocking_pool.h"
#include "support/harness.h"

namespace galay::test {
namespace {

using namespace std::chrono_literals;

class FsTest : public BackendTest {
 protected:
  void SetUp() override {
    BackendTest::SetUp();
    if (IsSkipped() || HasFatalFailure()) return;
    dir_ = tmp_.create("galay_fs_test");
    ASSERT_FALSE(dir_.empty()) << tmp_.error();
  }
  std::string path(const std::string& name) const { return dir_ + "/" + name; }
  // True when opens run as open(2) on a pool worker (and so wait for a FIFO's writer);
  // io_uring's OPENAT opens a FIFO non-blocking instead (see fs_ops.h).
  virtual bool opens_on_pool() const { return GetParam() != BackendKind::io_uring; }

  TempDir tmp_;  // removed after TearDown, once the scheduler is gone
  std::string dir_;
};

// The same tests on io_uring with every path opcode on the blocking pool (the fallback for
// kernels that lack them), through the backend's test hook read at scheduler creation.
class FsPoolFallbackTest : public FsTest {
 protected:
  void SetUp() override {
    ::setenv("GALAY_KERNEL_IO_URING_NO_PATH_OPS", "1", 1);
    FsTest::SetUp();
    ::unsetenv("GALAY_KERNEL_IO_URING_NO_PATH_OPS");
  }
  bool opens_on_pool() const override { return true; }
};

void write_file(const std::string& p, const std::string& data, mode_t mode = 0644) {
  int fd = ::open(p.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << p << ": " << std::strerror(errno);
  ASSERT_EQ(::write(fd, data.data(), data.size()), static_cast<ssize_t>(data.size()));
  ::close(fd);
}

bool exists(const std::string& p) {
  struct stat st {};
  return ::lstat(p.c_str(), &st) == 0;
}

// Unblocks readers waiting in open(2) on a FIFO after `after`, unless disarmed first: a
// hung loop then fails the test's assertions instead of hanging the suite.
class FifoValve {
 public:
  FifoValve(std::string fifo, std::chrono::milliseconds after)
      : thread_([this, fifo, after] {
          std::unique_lock lock(mutex_);
          if (cv_.wait_for(lock, after, [this] { return done_; })) return;
          fired_ = true;
          int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
          if (w >= 0) {
            std::this_thread::sleep_for(100ms);
            ::close(w);
          }
        }) {}
  ~FifoValve() {
    {
      std::lock_guard lock(mutex_);
      done_ = true;
    }
    cv_.notify_all();
    thread_.join();
  }
  bool fired() {
    std::lock_guard lock(mutex_);
    return fired_;
  }

 private:
  std::mutex mutex_;
  std::condition_variable cv_;
  bool done_ = false;
  bool fired_ = false;
  std::thread thread_;  // last: started once the rest exists
};

// Open the FIFO's write end (which wakes readers waiting in open(2)), retrying while no
// reader has got there yet (ENXIO), for up to ~2 s or until `give_up()` is true.
Task<int> open_writer(std::string fifo, std::function<bool()> give_up) {
  for (int i = 0; i < 200; ++i) {
    int w = ::open(fifo.c_str(), O_WRONLY | O_NONBLOCK | O_CLOEXEC);
    if (w >= 0 || errno != ENXIO || give_up()) co_return w;
    co_await sleep_for(10ms);
  }
  co_return -1;
}

template <class E>
std::error_code err_of(const E& e) {
  return e ? std::error_code() : e.error();
}

// ---- bodies, shared by FsTest and FsPoolFallbackTest ----

Task<void> stat_body(std::string dir) {
  const std::string file = dir + "/f";
  write_file(file, "hello");
  ::chmod(file.c_str(), 0640);
  struct stat ref {};
  CO_ASSERT_TRUE(::stat(file.c_str(), &ref) == 0);

  auto st = co_await fs::stat(file);
  CO_ASSERT_TRUE(st);
  EXPECT_EQ(st->size, 5u);
  EXPECT_EQ(st->type, fs::FileType::regular);
  EXPECT_EQ(st->mode, 0640u);
  EXPECT_EQ(st->ino, static_cast<std::uint64_t>(ref.st_ino));
  EXPECT_EQ(st->dev, static_cast<std::uint64_t>(ref.st_dev));
  EXPECT_EQ(st->nlink, 1u);
  EXPECT_EQ(st->uid, ref.st_uid);
  EXPECT_EQ(st->gid, ref.st_gid);
  EXPECT_EQ(st->mtime.time_since_epoch(),
            std::chrono::seconds(ref.st_mtim.tv_sec) + std::chrono::nanoseconds(ref.st_mtim.tv_nsec));

  auto d = co_await fs::stat(dir);
  CO_ASSERT_TRUE(d);
  EXPECT_EQ(d->type, fs::FileType::directory);

  auto missing = co_await fs::stat(dir + "/missing");
  CO_ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto under_file = co_await fs::stat(file + "/x");
  CO_ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error(), std::errc::not_a_directory);

  // A symlink: followed by stat, not by stat_at(AT_SYMLINK_NOFOLLOW).
  CO_ASSERT_TRUE(::symlink(file.c_str(), (dir + "/link").c_str()) == 0);
  auto followed = co_await fs::stat(dir + "/link");
  CO_ASSERT_TRUE(followed);
  EXPECT_EQ(followed->type, fs::FileType::regular);
  EXPECT_EQ(followed->ino, st->ino);
  auto link = co_await fs::stat_at(AT_FDCWD, dir + "/link", AT_SYMLINK_NOFOLLOW);
  CO_ASSERT_TRUE(link);
  EXPECT_EQ(link->type, fs::FileType::symlink);
  EXPECT_NE(link->ino, st->ino);

  // Relative to a directory fd.
  int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  CO_ASSERT_TRUE(dfd >= 0);
  auto rel = co_await fs::stat_at(dfd, "f", 0);
  ::close(dfd);
  CO_ASSERT_TRUE(rel);
  EXPECT_EQ(rel->ino, st->ino);
}

Task<void> file_stat_body(std::string dir) {
  const std::string p = dir + "/g";
  auto f = co_await File::open_async(p, O_RDWR | O_CREAT | O_TRUNC, 0600);
  CO_ASSERT_TRUE(f);
  auto n = co_await f->write_at("0123456789", 10, 0);
  CO_ASSERT_TRUE(n && *n == 10);
  auto st = co_await f->stat();
  CO_ASSERT_TRUE(st);
  EXPECT_EQ(st->size, 10u);
  EXPECT_EQ(st->type, fs::FileType::regular);
  EXPECT_EQ(st->mode, 0600u);
  struct stat ref {};
  CO_ASSERT_TRUE(::stat(p.c_str(), &ref) == 0);
  EXPECT_EQ(st->ino, static_cast<std::uint64_t>(ref.st_ino));
  // An unlinked file is still there for fstat, with no links.
  CO_ASSERT_TRUE(co_await fs::unlink(p));
  auto gone = co_await f->stat();
  CO_ASSERT_TRUE(gone);
  EXPECT_EQ(gone->nlink, 0u);

  File empty;
  auto bad = co_await empty.stat();
  CO_ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error(), std::errc::bad_file_descriptor);
}

Task<void> namespace_ops_body(std::string dir) {
  const std::string a = dir + "/a", b = dir + "/b", sub = dir + "/sub";
  write_file(a, "x");

  // rename: moves, replaces an existing target; ENOENT for a missing source.
  CO_ASSERT_TRUE(co_await fs::rename(a, b));
  EXPECT_FALSE(exists(a));
  EXPECT_TRUE(exists(b));
  write_file(a, "yy");
  CO_ASSERT_TRUE(co_await fs::rename(a, b));
  auto st = co_await fs::stat(b);
  CO_ASSERT_TRUE(st);
  EXPECT_EQ(st->size, 2u);
  auto r = co_await fs::rename(dir + "/missing", dir + "/c");
  CO_ASSERT_FALSE(r);
  EXPECT_EQ(r.error(), std::errc::no_such_file_or_directory);

  // mkdir: creates with the mode (umask aside); EEXIST for anything already there;
  // ENOENT without a parent; ENOTDIR under a file.
  CO_ASSERT_TRUE(co_await fs::mkdir(sub, 0700));
  struct stat ds {};
  CO_ASSERT_TRUE(::stat(sub.c_str(), &ds) == 0);
  EXPECT_TRUE(S_ISDIR(ds.st_mode));
  EXPECT_EQ(ds.st_mode & 0777, 0700u);
  auto again = co_await fs::mkdir(sub);
  CO_ASSERT_FALSE(again);
  EXPECT_EQ(again.error(), std::errc::file_exists);
  auto on_file = co_await fs::mkdir(b);
  CO_ASSERT_FALSE(on_file);
  EXPECT_EQ(on_file.error(), std::errc::file_exists);
  auto no_parent = co_await fs::mkdir(dir + "/none/x");
  CO_ASSERT_FALSE(no_parent);
  EXPECT_EQ(no_parent.error(), std::errc::no_such_file_or_directory);
  auto under_file = co_await fs::mkdir(b + "/x");
  CO_ASSERT_FALSE(under_file);
  EXPECT_EQ(under_file.error(), std::errc::not_a_directory);

  // rmdir: ENOTEMPTY while it holds something, ENOTDIR on a file, ENOENT when gone.
  write_file(sub + "/inner", "");
  auto not_empty = co_await fs::rmdir(sub);
  CO_ASSERT_FALSE(not_empty);
  EXPECT_EQ(not_empty.error(), std::errc::directory_not_empty);
  EXPECT_TRUE(exists(sub));
  auto rmdir_file = co_await fs::rmdir(b);
  CO_ASSERT_FALSE(rmdir_file);
  EXPECT_EQ(rmdir_file.error(), std::errc::not_a_directory);

  // unlink: removes a file; ENOENT when missing; EISDIR (Linux) for a directory.
  CO_ASSERT_TRUE(co_await fs::unlink(sub + "/inner"));
  EXPECT_FALSE(exists(sub + "/inner"));
  auto unlink_dir = co_await fs::unlink(sub);
  CO_ASSERT_FALSE(unlink_dir);
  EXPECT_EQ(unlink_dir.error(), std::errc::is_a_directory);
  CO_ASSERT_TRUE(co_await fs::rmdir(sub));
  EXPECT_FALSE(exists(sub));
  auto rmdir_gone = co_await fs::rmdir(sub);
  CO_ASSERT_FALSE(rmdir_gone);
  EXPECT_EQ(rmdir_gone.error(), std::errc::no_such_file_or_directory);
  CO_ASSERT_TRUE(co_await fs::unlink(b));
  auto unlink_gone = co_await fs::unlink(b);
  CO_ASSERT_FALSE(unlink_gone);
  EXPECT_EQ(unlink_gone.error(), std::errc::no_such_file_or_directory);
}

Task<void> bad_paths_body(std::string dir) {
  using namespace std::string_literals;
  const std::string nul = dir + "/a\0b"s;
  const std::string before_nul = dir + "/a";
  const std::string too_long = dir + "/" + std::string(PATH_MAX, 'x');
  auto expect_all = [&](const std::string& p, std::errc want) -> Task<void> {
    EXPECT_EQ(err_of(co_await fs::stat(p)), want);
    EXPECT_EQ(err_of(co_await fs::open(p, O_RDWR | O_CREAT, 0644)), want);
    EXPECT_EQ(err_of(co_await File::open_async(p, O_RDWR | O_CREAT, 0644)), want);
    EXPECT_EQ(err_of(co_await fs::mkdir(p)), want);
    EXPECT_EQ(err_of(co_await fs::rmdir(p)), want);
    EXPECT_EQ(err_of(co_await fs::unlink(p)), want);
    EXPECT_EQ(err_of(co_await fs::rename(p, dir + "/ok")), want);
    EXPECT_EQ(err_of(co_await fs::sync_dir(p)), want);
    EXPECT_EQ(err_of(co_await fs::read_dir(p)), want);
    EXPECT_EQ(err_of(co_await fs::stat_at(AT_FDCWD, p, AT_SYMLINK_NOFOLLOW)), want);
  };
  co_await expect_all(nul, std::errc::invalid_argument);
  co_await expect_all(too_long, std::errc::filename_too_long);
  // The second path of a rename is checked too; the source is left alone.
  write_file(dir + "/src", "");
  EXPECT_EQ(err_of(co_await fs::rename(dir + "/src", nul)), std::errc::invalid_argument);
  EXPECT_EQ(err_of(co_await fs::rename(dir + "/src", too_long)), std::errc::filename_too_long);
  EXPECT_TRUE(exists(dir + "/src"));
  // Nothing was created under the part before the NUL.
  EXPECT_FALSE(exists(before_nul));
  EXPECT_FALSE(exists(dir + "/ok"));
  // Just under the limit the kernel decides (here: a missing directory).
  const std::string at_limit = "/" + std::string(PATH_MAX - 2, 'y');
  auto near = co_await fs::stat(at_limit);
  CO_ASSERT_FALSE(near);
  EXPECT_NE(near.error(), std::errc::invalid_argument);
}

Task<void> read_dir_body(std::string dir) {
  write_file(dir + "/file", "1");
  CO_ASSERT_TRUE(co_await fs::mkdir(dir + "/dir"));
  CO_ASSERT_TRUE(::mkfifo((dir + "/fifo").c_str(), 0600) == 0);
  CO_ASSERT_TRUE(::symlink("file", (dir + "/link").c_str()) == 0);
  auto entries = co_await fs::read_dir(dir);
  CO_ASSERT_TRUE(entries);
  CO_ASSERT_TRUE(entries->size() == 4);
  const std::pair<const char*, fs::FileType> want[] = {{"dir", fs::FileType::directory},
                                                       {"fifo", fs::FileType::fifo},
                                                       {"file", fs::FileType::regular},
                                                       {"link", fs::FileType::symlink}};
  for (std::size_t i = 0; i < 4; ++i) {
    EXPECT_EQ((*entries)[i].name, want[i].first);
    EXPECT_EQ((*entries)[i].type, want[i].second) << want[i].first;
  }
  auto empty = co_await fs::read_dir(dir + "/dir");
  CO_ASSERT_TRUE(empty);
  EXPECT_TRUE(empty->empty());
  auto missing = co_await fs::read_dir(dir + "/missing");
  CO_ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto on_file = co_await fs::read_dir(dir + "/file");
  CO_ASSERT_FALSE(on_file);
  EXPECT_EQ(on_file.error(), std::errc::not_a_directory);
}

Task<void> sync_dir_body(std::string dir) {
  write_file(dir + "/new", "data");
  CO_ASSERT_TRUE(co_await fs::sync_dir(dir));
  auto missing = co_await fs::sync_dir(dir + "/missing");
  CO_ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto on_file = co_await fs::sync_dir(dir + "/new");
  CO_ASSERT_FALSE(on_file);
  EXPECT_EQ(on_file.error(), std::errc::not_a_directory);
}

Task<void> open_body(std::string dir) {
  const int fds_before = open_fd_count();
  write_file(dir + "/existing", "abc");
  {
    // The path is a temporary that is gone before the open starts: the awaitable has a copy.
    auto pending = File::open_async(std::string(dir) + "/existing", O_RDONLY);
    auto f = co_await std::move(pending);
    CO_ASSERT_TRUE(f);
    EXPECT_TRUE(f->is_open());
    EXPECT_FALSE(f->is_direct());
    char buf[8] = {};
    auto n = co_await f->read_at(buf, sizeof(buf), 0);
    CO_ASSERT_TRUE(n);
    EXPECT_EQ(std::string(buf, *n), "abc");
    // O_CLOEXEC is always added.
    EXPECT_TRUE(::fcntl(f->native_handle(), F_GETFD) & FD_CLOEXEC);
  }
  auto missing = co_await fs::open(dir + "/missing", O_RDONLY);
  CO_ASSERT_FALSE(missing);
  EXPECT_EQ(missing.error(), std::errc::no_such_file_or_directory);
  auto excl = co_await File::open_async(dir + "/existing", O_RDWR | O_CREAT | O_EXCL, 0644);
  CO_ASSERT_FALSE(excl);
  EXPECT_EQ(excl.error(), std::errc::file_exists);
  auto dir_for_writing = co_await fs::open(dir, O_WRONLY);
  CO_ASSERT_FALSE(dir_for_writing);
  EXPECT_EQ(dir_for_writing.error(), std::errc::is_a_directory);
  {
    auto created = co_await File::open_async(dir + "/created", O_RDWR | O_CREAT | O_EXCL, 0600);
    CO_ASSERT_TRUE(created);
    auto w = co_await created->write_at("zz", 2, 0);
    CO_ASSERT_TRUE(w && *w == 2);
    CO_ASSERT_TRUE(co_await created->close());
  }
  auto st = co_await fs::stat(dir + "/created");
  CO_ASSERT_TRUE(st);
  EXPECT_EQ(st->size, 2u);
  EXPECT_EQ(st->mode, 0600u);
  EXPECT_EQ(open_fd_count(), fds_before);
}

// A reader's open(2) of a FIFO waits for a writer: on the pool it holds a worker, and the
// loop must keep running (a timer fires on time) until the writer comes.
Task<void> slow_open_body(std::string dir, bool on_pool) {
  const std::string fifo = dir + "/slow";
  CO_ASSERT_TRUE(::mkfifo(fifo.c_str(), 0600) == 0);
  FifoValve valve(fifo, 10s);
  bool reader_done = false;
  auto reader = spawn([](std::string p, bool* done) -> Task<bool> {
    auto f = co_await fs::open(p, O_RDONLY);
    *done = true;
    co_return f.has_value();
  }(fifo, &reader_done));
  const auto t0 = std::chrono::steady_clock::now();
  CO_ASSERT_TRUE(co_await sleep_for(30ms));
  const auto late = std::chrono::steady_clock::now() - t0;
  EXPECT_LT(late, 2s) << "the timer waited for the open";
  EXPECT_FALSE(valve.fired());
  if (on_pool) {
    EXPECT_FALSE(reader_done) << "open(2) of a FIFO returned before any writer";
  }
  int w = co_await open_writer(fifo, [&] { return reader_done; });
  EXPECT_TRUE(co_await reader);
  if (on_pool) {
    EXPECT_GE(w, 0) << std::strerror(errno);
  }
  if (w >= 0) ::close(w);
  EXPECT_FALSE(valve.fired());
}

// Timeouts and cancellation of pending path ops: a queued pool op gives up at once, a
// running one finishes with its real result; no descriptor leaks either way.
Task<void> timeout_body(std::string dir, bool on_pool) {
  const int fds_before = open_fd_count();
  const std::string fifo = dir + "/fifo";
  CO_ASSERT_TRUE(::mkfifo(fifo.c_str(), 0600) == 0);
  FifoValve valve(fifo, 10s);
  int opened = 0;
  auto reader = [](std::string p, int* count) -> Task<bool> {
    auto f = co_await fs::open(p, O_RDONLY);
    ++*count;
    co_return f.has_value();  // the File closes here
  };
  // Occupy every pool worker with an open that waits for a writer (on io_uring's ring the
  // opens finish at once).
  std::vector<JoinHandle<bool>> readers;
  for (std::size_t i = 0; i < BlockingPool::kDefaultThreads; ++i) readers.push_back(spawn(reader(fifo, &opened)));
  CO_ASSERT_TRUE(co_await sleep_for(30ms));

  // Queued behind them: the deadline ends them at once, and the open never runs.
  {
    auto st = co_await fs::stat(dir, 20ms);
    auto op = co_await fs::open(fifo, O_RDONLY, 0, 20ms);
    auto created = co_await fs::open(dir + "/never", O_RDWR | O_CREAT, 0644, 20ms);
    if (on_pool) {
      CO_ASSERT_FALSE(st);
      EXPECT_EQ(st.error(), std::errc::timed_out);
      CO_ASSERT_FALSE(op);
      EXPECT_EQ(op.error(), std::errc::timed_out);
      CO_ASSERT_FALSE(created);
      EXPECT_EQ(created.error(), std::errc::timed_out);
      EXPECT_FALSE(exists(dir + "/never"));
    } else {
      EXPECT_TRUE(st);
      EXPECT_TRUE(created);
    }
  }  // the Files the ring opened at once close here
  // A cancelled task's queued open: operation_canceled.
  auto victim = spawn([](std::string p) -> Task<std::error_code> {
    auto f = co_await fs::open(p, O_RDONLY);
    co_return f ? std::error_code() : f.error();
  }(fifo));
  co_await yield();
  victim.cancel();
  auto ec = co_await victim;
  if (on_pool) {
    EXPECT_EQ(ec, std::errc::operation_canceled) << ec.message();
  }

  // Release the readers: every one gets its File.
  int w = co_await open_writer(fifo, [&] { return opened == static_cast<int>(BlockingPool::kDefaultThreads); });
  for (auto& r : readers) EXPECT_TRUE(co_await r);
  EXPECT_EQ(opened, static_cast<int>(BlockingPool::kDefaultThreads));
  if (w >= 0) ::close(w);

  // A running open whose deadline passes while it waits: it finishes, with its File.
  {
    bool done = false;
    auto slow = spawn([](std::string p, bool* done) -> Task<bool> {
      auto f = co_await fs::open(p, O_RDONLY, 0, 10ms);
      *done = true;
      if (!f) ADD_FAILURE() << f.error().message();
      co_return f.has_value();
    }(fifo, &done));
    CO_ASSERT_TRUE(co_await sleep_for(50ms));
    if (on_pool) {
      EXPECT_FALSE(done) << "a running open(2) ended at its deadline";
    }
    int w2 = co_await open_writer(fifo, [&] { return done; });
    EXPECT_TRUE(co_await slow);
    if (w2 >= 0) ::close(w2);
  }
  EXPECT_FALSE(valve.fired());
  EXPECT_EQ(open_fd_count(), fds_before);
}

// ---- the tests ----

#define GALAY_FS_TESTS(Fixture)                                                                \
  TEST_P(Fixture, StatOfFileDirMissingAndSymlink) { run(stat_body(dir_)); }                    \
  TEST_P(Fixture, FileStat) { run(file_stat_body(dir_)); }                                     \
  TEST_P(Fixture, RenameUnlinkMkdirRmdirAndTheirErrors) { run(namespace_ops_body(dir_)); }     \
  TEST_P(Fixture, NulInPathAndTooLongPath) { run(bad_paths_body(dir_)); }                      \
  TEST_P(Fixture, ReadDirListsCreatedEntries) { run(read_dir_body(dir_)); }                    \
  TEST_P(Fixture, SyncDir) { run(sync_dir_body(dir_)); }                                       \
  TEST_P(Fixture, AsyncOpenExistingMissingAndExclusive) { run(open_body(dir_)); }              \
  TEST_P(Fixture, SlowOpenDoesNotBlockTheLoop) { run(slow_open_body(dir_, opens_on_pool())); } \
  TEST_P(Fixture, TimeoutAndCancelOfPendingOpsLeakNoFd) { run(timeout_body(dir_, opens_on_pool())); }

GALAY_FS_TESTS(FsTest)
GALAY_FS_TESTS(FsPoolFallbackTest)

GALAY_INSTANTIATE_ALL_BACKENDS(FsTest);
INSTANTIATE_TEST_SUITE_P(IoUringPool, FsPoolFallbackTest, ::testing::Values(BackendParam{BackendKind::io_uring}),
                         ::galay::test::backend_name);

}  // namespace
}  // namespace galay::test
