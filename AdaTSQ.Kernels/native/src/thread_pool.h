// A small persistent thread pool: run() hands `tasks` indices to `threads` threads (the caller
// included) and returns when all are done. Calls are serialised. The pool is never destroyed (its
// threads end with the process), so no static destructor joins threads during unload.
//
// When the process has already loaded a GNU OpenMP runtime (libtorch brings its own libgomp), run()
// uses that runtime's thread team instead (GOMP_parallel, looked up once with dlopen RTLD_NOLOAD):
// libtorch's OpenMP workers spin for a while after every torch op, and a second set of threads
// would compete with them for the same cores inside a model forward. Sharing the team also means
// the workers are usually awake already. adatsq_set_thread_backend picks.
#pragma once
#include <dlfcn.h>
#include <link.h>
#include <atomic>
#include <cstring>
#include <string>
#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <thread>
#include <vector>

namespace adatsq {

class ThreadPool {
 public:
  using TaskFn = void (*)(void* ctx, int64_t task);

  static ThreadPool& instance() {
    static ThreadPool* pool = new ThreadPool();
    return *pool;
  }

  // 0: the host's OpenMP team when one is loaded, else the own threads; 1: always the own threads.
  static std::atomic<int>& backend() {
    static std::atomic<int> b{0};
    return b;
  }

  // True when the last multi-threaded run() used the host's OpenMP team.
  bool last_run_used_openmp() const { return last_openmp_; }

  void run(int threads, int64_t tasks, TaskFn fn, void* ctx) {
    std::lock_guard<std::mutex> serial(call_mutex_);
    if (threads > tasks) threads = (int)tasks;
    if (threads <= 1) {
      for (int64_t i = 0; i < tasks; i++) fn(ctx, i);
      return;
    }
    if (backend().load() == 0) {
      if (GompParallel gomp = host_gomp()) {
        OmpJob job{fn, ctx, tasks, {0}};
        gomp(&omp_body, &job, (unsigned)threads, 0);
        last_openmp_ = true;
        return;
      }
    }
    last_openmp_ = false;
    grow(threads - 1);
    {
      std::lock_guard<std::mutex> lk(m_);
      fn_ = fn;
      ctx_ = ctx;
      tasks_ = tasks;
      next_.store(0);
      participants_ = threads - 1;
      pending_ = threads - 1;
      ++generation_;
    }
    wake_.notify_all();
    work();
    std::unique_lock<std::mutex> lk(m_);
    done_.wait(lk, [&] { return pending_ == 0; });
  }

 private:
  using GompParallel = void (*)(void (*)(void*), void*, unsigned, unsigned);

  struct OmpJob {
    TaskFn fn;
    void* ctx;
    int64_t tasks;
    std::atomic<int64_t> next;
  };

  static void omp_body(void* p) {
    OmpJob& j = *(OmpJob*)p;
    for (;;) {
      int64_t i = j.next.fetch_add(1);
      if (i >= j.tasks) break;
      j.fn(j.ctx, i);
    }
  }

  // GOMP_parallel of a libgomp already mapped into the process, or null (never loads one). A miss
  // is not cached: libtorch may be loaded after the first kernel call.
  static GompParallel host_gomp() {
    static std::atomic<GompParallel> found{nullptr};
    if (GompParallel fn = found.load()) return fn;
    std::string path;
    dl_iterate_phdr(
        [](dl_phdr_info* info, size_t, void* out) {
          const char* name = info->dlpi_name;
          const char* base = name ? std::strrchr(name, '/') : nullptr;
          base = base ? base + 1 : name;
          if (base && std::strncmp(base, "libgomp", 7) == 0) {
            *(std::string*)out = name;
            return 1;
          }
          return 0;
        },
        &path);
    if (path.empty()) return nullptr;
    void* h = dlopen(path.c_str(), RTLD_LAZY | RTLD_NOLOAD);  // reference kept: the runtime stays loaded
    GompParallel fn = h ? (GompParallel)dlsym(h, "GOMP_parallel") : nullptr;
    found.store(fn);
    return fn;
  }

  void grow(int workers) {
    while ((int)workers_.size() < workers) {
      int index = (int)workers_.size();
      uint64_t start = generation_;  // stable: only run() changes it, under call_mutex_
      workers_.emplace_back([this, index, start] { loop(index, start); });
      workers_.back().detach();
    }
  }

  void work() {
    for (;;) {
      int64_t i = next_.fetch_add(1);
      if (i >= tasks_) break;
      fn_(ctx_, i);
    }
  }

  void loop(int index, uint64_t seen) {
    std::unique_lock<std::mutex> lk(m_);
    for (;;) {
      wake_.wait(lk, [&] { return generation_ != seen; });
      seen = generation_;
      if (index >= participants_) continue;
      lk.unlock();
      work();
      lk.lock();
      if (--pending_ == 0) done_.notify_one();
    }
  }

  std::mutex call_mutex_, m_;
  std::condition_variable wake_, done_;
  std::vector<std::thread> workers_;
  TaskFn fn_ = nullptr;
  void* ctx_ = nullptr;
  int64_t tasks_ = 0;
  std::atomic<int64_t> next_{0};
  int participants_ = 0, pending_ = 0;
  uint64_t generation_ = 0;
  bool last_openmp_ = false;
};

}  // namespace adatsq
