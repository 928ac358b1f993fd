// Two kinds of failure (STYLE.md "Errors"): bad input throws dsv3::Error with a message
// that names the file, tensor, field or flag; a broken invariant aborts with file:line.
#pragma once

#include <fmt/format.h>

#include <new>
#include <stdexcept>
#include <string>

namespace dsv3 {

class Error : public std::runtime_error {
 public:
  explicit Error(const std::string& what) : std::runtime_error(what) {}
};

// Throws Error with a fmt-formatted message.
template <typename... Args>
[[noreturn]] void fail(fmt::format_string<Args...> f, Args&&... args) {
  throw Error(fmt::format(f, std::forward<Args>(args)...));
}

// Prefixes the message of an exception escaping `fn` with `context: ` and rethrows it as Error:
// a library's exception (nlohmann's type_error, std::out_of_range, bad_alloc) from reading a file
// still names the file.
template <typename Fn>
auto with_context(const std::string& context, Fn&& fn) -> decltype(fn()) {
  try {
    return fn();
  } catch (const Error& e) {
    throw Error(context + ": " + e.what());
  } catch (const std::bad_alloc&) {
    throw Error(context + ": out of memory (does a size or id in it ask for too much?)");
  } catch (const std::exception& e) {
    throw Error(context + ": " + e.what());
  }
}

[[noreturn]] void check_failed(const char* file, int line, const char* cond, const std::string& msg);

}  // namespace dsv3

#define DSV3_CHECK(cond, msg)                                          \
  do {                                                                 \
    if (!(cond)) ::dsv3::check_failed(__FILE__, __LINE__, #cond, msg); \
  } while (0)

#ifdef NDEBUG
#define DSV3_DCHECK(cond, msg) \
  do {                         \
  } while (0)
#else
#define DSV3_DCHECK(cond, msg) DSV3_CHECK(cond, msg)
#endif
