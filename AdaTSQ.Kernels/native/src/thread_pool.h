// A small persistent thread pool: run() hands `tasks` indices to `threads` threads (the caller
// included) and returns when all are done. Calls are serialised. The pool is never destroyed (its
// threads end with the process), so no static destructor joins threads during unload.
#pragma once
#include <atomic>
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

  void run(int threads, int64_t tasks, TaskFn fn, void* ctx) {
    std::lock_guard<std::mutex> serial(call_mutex_);
    if (threads > tasks) threads = (int)tasks;
    if (threads <= 1) {
      for (int64_t i = 0; i < tasks; i++) fn(ctx, i);
      return;
    }
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
};

}  // namespace adatsq
