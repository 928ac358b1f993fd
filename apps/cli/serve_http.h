// The HTTP binding of serve::Service through cpp-httplib (Debian's libcpp-httplib-dev, a
// compiled library configured through its runtime setters). It owns what is HTTP's alone:
// the listening socket, Bearer authentication, CORS, the body-size limit (413), server-sent
// event framing onto chunked responses, and noticing a client that closed its connection.
// httplib holds one worker thread per connection; requests still queue in our Scheduler.
// It also answers the chat page embedded from web/ (web_assets.h) at / and /web/*.
#pragma once

#include <atomic>
#include <memory>
#include <string>
#include <thread>

#include "serve/api_error.h"
#include "serve/service.h"

namespace httplib {
class Server;
}

namespace dsv3::cli {

struct HttpOptions {
  std::string host = "127.0.0.1";
  int port = 8000;
  std::string api_key;           // empty: no authentication
  size_t max_body_bytes = 32u << 20;
  int worker_threads = 96;       // connections served at once
  bool serve_web = true;         // the chat page (web/, embedded) at / and /web/*; --no-web: 404
};

class HttpServer {
 public:
  explicit HttpServer(HttpOptions opts);
  ~HttpServer();

  // Binds the port (throws Error naming host:port on failure) and starts answering on a thread:
  // 503 "loading" until set_service().
  void start();
  // From now on requests go to `service` (which outlives this server).
  void set_service(serve::Service* service) { service_.store(service); }
  // Lets streams whose last frames are queued finish writing (up to ~1.5 s: cpp-httplib stops
  // writing chunked bodies once stopping), stops accepting, ends idle connections at once and cuts
  // those still open 250 ms later (a client that stopped reading), and returns when every
  // connection's handler has returned (within ~2 s).
  void stop();
  int port() const { return bound_port_; }

 private:
  serve::ApiError body_too_large() const;  // the 413 for a body over max_body_bytes

  HttpOptions opts_;
  std::unique_ptr<httplib::Server> svr_;
  std::atomic<serve::Service*> service_{nullptr};
  std::thread thread_;
  int bound_port_ = 0;
  std::atomic<int> active_streams_{0};  // chunked responses still being written
};

}  // namespace dsv3::cli
