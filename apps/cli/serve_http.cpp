#include "apps/cli/serve_http.h"

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <poll.h>
#include <strings.h>
#include <sys/socket.h>
#include <unistd.h>

#include <httplib.h>

#include <cstdio>
#include <cstring>
#include <string_view>

#include "apps/cli/web_assets.h"
#include "base/error.h"
#include "serve/api_error.h"

namespace dsv3::cli {

namespace {

using serve::ApiError;

// Calls fn(fd) for each descriptor of this process above stderr (cpp-httplib 0.11 exposes
// neither its sockets nor a "client closed" check to handlers, so they are found here); stops
// early when fn returns true.
template <class Fn>
void for_each_fd(Fn fn) {
  DIR* d = opendir("/proc/self/fd");
  if (!d) return;
  while (dirent* e = readdir(d)) {
    const int fd = std::atoi(e->d_name);
    if (fd > 2 && fn(fd)) break;
  }
  closedir(d);
}

// The TCP port of an AF_INET or AF_INET6 address; -1 for any other family.
int port_of(const sockaddr_storage& a) {
  if (a.ss_family == AF_INET) return ntohs(reinterpret_cast<const sockaddr_in*>(&a)->sin_port);
  if (a.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&a)->sin6_port);
  return -1;
}

// Calls fn(fd, peer_host, peer_port, local_port) for each connected TCP socket of this process;
// stops early when fn returns true.
template <class Fn>
void for_each_connected_socket(Fn fn) {
  for_each_fd([&](int fd) {
    sockaddr_storage peer{}, self{};
    socklen_t pl = sizeof(peer), sl = sizeof(self);
    if (getpeername(fd, reinterpret_cast<sockaddr*>(&peer), &pl) != 0) return false;
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) return false;
    const int pport = port_of(peer);
    if (pport < 0) return false;
    char host[INET6_ADDRSTRLEN] = {};
    if (peer.ss_family == AF_INET)
      inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&peer)->sin_addr, host, sizeof(host));
    else
      inet_ntop(AF_INET6, &reinterpret_cast<sockaddr_in6*>(&peer)->sin6_addr, host, sizeof(host));
    return static_cast<bool>(fn(fd, std::string_view(host), pport, port_of(self)));
  });
}

// The connection's socket, found by its addresses. -1 when not found.
int find_connection_fd(const std::string& remote_addr, int remote_port, int local_port) {
  int found = -1;
  for_each_connected_socket([&](int fd, std::string_view host, int pport, int sport) {
    if (pport != remote_port || sport != local_port || host != remote_addr) return false;
    found = fd;
    return true;
  });
  return found;
}

// cpp-httplib 0.11 listens with a backlog of 5: a burst of new connections (8 clients starting at
// once) overflowed the accept queue, and the connections left out waited for their client's SYN
// retry (1 s, then 3 s) before the server saw them. Linux takes a second listen() on the bound
// socket as a new backlog (capped by net.core.somaxconn). Returns false when no listening socket
// on `port` was found.
bool widen_backlog(int port) {
  bool done = false;
  for_each_fd([&](int fd) {
    int listening = 0;
    socklen_t len = sizeof(listening);
    if (getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &listening, &len) != 0 || !listening) return false;
    sockaddr_storage self{};
    socklen_t sl = sizeof(self);
    if (getsockname(fd, reinterpret_cast<sockaddr*>(&self), &sl) != 0) return false;
    if (port_of(self) == port && ::listen(fd, SOMAXCONN) == 0) done = true;
    return false;
  });
  return done;
}

// True once the peer has closed (or reset) the connection.
bool peer_closed(int fd) {
  if (fd < 0) return false;
  pollfd p{fd, POLLRDHUP, 0};
  if (poll(&p, 1, 0) <= 0) return false;
  return (p.revents & (POLLRDHUP | POLLHUP | POLLERR)) != 0;
}

void set_error(httplib::Response& res, const ApiError& e) {
  res.status = e.status;
  res.set_content(serve::error_body(e).dump(), "application/json");
}

// The page's files: GET / and /web/*.
bool is_web_path(const std::string& path) { return path == "/" || path.rfind("/web/", 0) == 0; }

// Answers an embedded file of the chat page. The policy lets the page load and connect to this
// server only: a reply that names an image or a script elsewhere cannot make the browser fetch it,
// and inline scripts never run (the page has none; Markdown output is sanitised besides).
void answer_web(const httplib::Request& req, httplib::Response& res) {
  for (const WebAsset& a : web_assets()) {
    if (a.path != req.path) continue;
    res.status = 200;
    res.set_content(a.body.data(), a.body.size(), std::string(a.content_type));
    res.set_header("Content-Security-Policy",
                   "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                   "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'");
    res.set_header("X-Content-Type-Options", "nosniff");
    res.set_header("Referrer-Policy", "no-referrer");
    // The binary may be rebuilt with a new page at the same URL: revalidate each load.
    res.set_header("Cache-Control", "no-cache");
    return;
  }
  set_error(res, ApiError(404, "no file " + req.path + " in the chat page", "not_found_error"));
}

void add_cors(const httplib::Request& req, httplib::Response& res) {
  const std::string origin = req.get_header_value("Origin");
  res.set_header("Access-Control-Allow-Origin", origin.empty() ? "*" : origin);
  res.set_header("Vary", "Origin");
}

}  // namespace

HttpServer::HttpServer(HttpOptions opts) : opts_(std::move(opts)), svr_(std::make_unique<httplib::Server>()) {}

HttpServer::~HttpServer() { stop(); }

void HttpServer::start() {
  httplib::Server& svr = *svr_;
  const int workers = opts_.worker_threads;
  svr.new_task_queue = [workers] { return new httplib::ThreadPool(size_t(workers)); };
  svr.set_payload_max_length(opts_.max_body_bytes);
  // A client that stalls mid-request holds a worker until this expires.
  svr.set_read_timeout(10, 0);
  svr.set_write_timeout(60, 0);
  // An idle connection is closed after this long. cpp-httplib 0.11 also gives a new connection
  // only this long to send its first request (after that it closes it without an answer: with 1 s,
  // a client whose event loop was busy for a second between connecting and writing got "other side
  // closed"), and it is longer than clients keep idle connections (undici: the server's hint minus
  // 2 s; httpx: 5 s), so a client never reuses a connection the server is closing. 5 s as uvicorn
  // (vLLM). Idle connections do not delay shutdown: stop() ends them.
  svr.set_keep_alive_timeout(5);

  svr.set_pre_routing_handler([this](const httplib::Request& req, httplib::Response& res) {
    add_cors(req, res);
    // Bodies are JSON whatever the Content-Type says. `curl -d` sends form-urlencoded, which
    // cpp-httplib would cap at 8 KiB (a compile-time limit of the packaged library, answered
    // with a misleading 413); the header is dropped before the body is read (this handler runs
    // first), so such bodies are read like any other.
    if (req.get_header_value("Content-Type") == "application/x-www-form-urlencoded")
      const_cast<httplib::Request&>(req).headers.erase("Content-Type");
    if (req.method == "OPTIONS") {
      // CORS preflight, without authentication (browsers send no credentials with it); the
      // requested headers are reflected so the openai SDK's X-Stainless-* pass (SERVER.md §3.6).
      const std::string asked = req.get_header_value("Access-Control-Request-Headers");
      res.status = 204;
      res.set_header("Access-Control-Allow-Methods", "GET, POST, OPTIONS");
      res.set_header("Access-Control-Allow-Headers", asked.empty() ? "*" : asked);
      res.set_header("Access-Control-Max-Age", "86400");
      return httplib::Server::HandlerResponse::Handled;
    }
    // Health and metrics stay open for load balancers and Prometheus (as vLLM leaves them), and
    // the chat page for browsers (it holds no secrets; it sends the key with its API calls).
    const bool is_public = req.path == "/health" || req.path == "/v1/health" || req.path == "/metrics" ||
                           (opts_.serve_web && req.method == "GET" && is_web_path(req.path));
    if (!opts_.api_key.empty() && !is_public) {
      // The scheme is case-insensitive (RFC 9110 §11.1): "bearer KEY" is accepted too.
      const std::string auth = req.get_header_value("Authorization");
      const bool bearer = auth.size() > 7 && strncasecmp(auth.c_str(), "Bearer ", 7) == 0;
      if (!bearer || auth.compare(7, std::string::npos, opts_.api_key) != 0) {
        set_error(res, ApiError(401, auth.empty() ? "missing API key: send 'Authorization: Bearer <key>'"
                                                  : "invalid API key",
                                "authentication_error", "", "invalid_api_key"));
        res.set_header("WWW-Authenticate", "Bearer");
        return httplib::Server::HandlerResponse::Handled;
      }
    }
    return httplib::Server::HandlerResponse::Unhandled;
  });

  auto handler = [this](const httplib::Request& req, const std::string& body, httplib::Response& res) {
    serve::Service* service = service_.load();
    if (!service) {
      ApiError e(503, "Loading model", "unavailable_error");
      set_error(res, e);
      res.set_header("retry-after", "2");
      return;
    }
    serve::ApiRequest ar;
    ar.method = req.method;
    ar.path = req.path;
    ar.body = body;
    const int fd = find_connection_fd(req.remote_addr, req.remote_port, req.local_port);
    ar.disconnected = [fd] { return peer_closed(fd); };
    serve::ApiResponse r = service->handle(ar);
    res.status = r.status;
    for (const auto& [k, v] : r.headers) res.set_header(k, v);
    if (!r.stream) {
      res.set_content(r.body, r.content_type);
      return;
    }
    auto stream = r.stream;
    active_streams_.fetch_add(1);
    res.set_chunked_content_provider(
        r.content_type,
        [stream](size_t, httplib::DataSink& sink) {
          std::vector<std::string> frames;
          const bool more = stream->pop(frames, std::chrono::milliseconds(250));
          for (const auto& f : frames)
            if (!sink.write(f.data(), f.size())) {
              stream->abandon();
              return false;
            }
          if (!more) sink.done();
          return true;
        },
        [this, stream](bool success) {
          if (!success) stream->abandon();
          active_streams_.fetch_sub(1);
        });
  };
  // Routes match in the order they are added: the page's paths first (before the model loads too).
  if (opts_.serve_web) svr.Get("/|/web/.*", answer_web);
  svr.Get(".*", [handler](const httplib::Request& req, httplib::Response& res) { handler(req, req.body, res); });
  // POST bodies are read here rather than by cpp-httplib: 0.11 applies set_payload_max_length to a
  // Content-Length only, so a chunked body, or a gzip body's unpacked bytes (it unpacks
  // Content-Encoding itself), grew without bound (a 400 KB gzip of 400 MB held a worker 40 s).
  // The receiver sees the unpacked bytes as they come and stops the read at the limit.
  auto with_body = [this, handler](const httplib::Request& req, httplib::Response& res,
                                   const httplib::ContentReader& read) {
    std::string body;
    bool too_large = false;
    const bool ok = read([&](const char* data, size_t n) {
      if (body.size() + n > opts_.max_body_bytes) {
        too_large = true;
        return false;
      }
      body.append(data, n);
      return true;
    });
    if (too_large || res.status == 413) return set_error(res, body_too_large());
    if (!ok) return set_error(res, ApiError(400, "malformed HTTP request body (it ended early or could not be decoded)"));
    handler(req, body, res);
  };
  svr.Post(".*", with_body);
  // Other methods reach the service too, which answers 405 (with Allow) on its paths, 404 elsewhere.
  svr.Put(".*", with_body);
  svr.Patch(".*", with_body);
  svr.Delete(".*", with_body);

  svr.set_error_handler(httplib::Server::HandlerWithResponse([this](const httplib::Request& req, httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    switch (res.status) {
      case 413: set_error(res, body_too_large()); break;
      case 404: set_error(res, ApiError(404, "no route " + req.method + " " + req.path, "not_found_error")); break;
      case 405: set_error(res, ApiError(405, "method " + req.method + " is not allowed", "invalid_request_error")); break;
      case 400: set_error(res, ApiError(400, "malformed HTTP request (a POST needs a body with Content-Length)")); break;
      default: set_error(res, ApiError(res.status, "HTTP error " + std::to_string(res.status))); break;
    }
    return httplib::Server::HandlerResponse::Handled;
  }));
  svr.set_exception_handler([](const httplib::Request&, httplib::Response& res, std::exception_ptr ep) {
    std::string what = "internal error";
    try {
      std::rethrow_exception(ep);
    } catch (const std::exception& e) {
      what = e.what();
    } catch (...) {
    }
    set_error(res, ApiError(500, what, "server_error"));
  });

  if (opts_.port == 0) {
    bound_port_ = svr.bind_to_any_port(opts_.host);
    if (bound_port_ <= 0) fail("--host {}: cannot listen on any port", opts_.host);
  } else {
    if (!svr.bind_to_port(opts_.host, opts_.port))
      fail("--host {} --port {}: cannot listen there ({}); is another server using the port?", opts_.host, opts_.port,
           std::strerror(errno));
    bound_port_ = opts_.port;
  }
  if (!widen_backlog(bound_port_))
    std::fprintf(stderr, "dsv3 serve: note: could not widen the listen backlog of port %d (bursts of new "
                 "connections may wait ~1 s)\n", bound_port_);
  thread_ = std::thread([this] { svr_->listen_after_bind(); });
}

ApiError HttpServer::body_too_large() const {
  return ApiError(413, fmt::format("the request body is larger than {} bytes (--max-body-mb)", opts_.max_body_bytes),
                  "invalid_request_error", "", "request_too_large");
}

void HttpServer::stop() {
  if (!thread_.joinable()) return;
  for (int i = 0; i < 150 && active_streams_.load() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  svr_->stop();  // closes the listening socket: no new connections
  // Calls fn(fd) for each connection accepted on our port.
  auto for_each_connection = [this](auto fn) {
    for_each_connected_socket([&](int fd, std::string_view, int, int local_port) {
      if (local_port == bound_port_) fn(fd);
      return false;
    });
  };
  auto open_connections = [&] {
    int n = 0;
    for_each_connection([&](int) { ++n; });
    return n;
  };
  // A worker waits up to the keep-alive timeout for a connection's next request; a read shutdown
  // ends that wait at once (the read sees end of file, the worker closes the connection). The
  // requests are finished by now (cmd_serve drains them first) and replies can still be written.
  for_each_connection([](int fd) { ::shutdown(fd, SHUT_RD); });
  // A worker blocked writing to a client that stopped reading (its buffers full; the write
  // timeout is 60 s) is not woken by that: connections still open after 250 ms are cut.
  for (int i = 0; i < 25 && open_connections() > 0; ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  for_each_connection([](int fd) { ::shutdown(fd, SHUT_RDWR); });
  thread_.join();
}

}  // namespace dsv3::cli
