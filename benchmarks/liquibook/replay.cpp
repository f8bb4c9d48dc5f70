// Replays a version-1 order stream through Liquibook's OrderBook (github.com/enewhuis/liquibook,
// BSD licence, header-only) and prints one JSON line, so `bench book` can measure Liquibook in
// the same run as our books (issue 15). Compiled by benchmarks/liquibook/run.py:
//
//   g++ -O3 -std=c++17 -DLIQUIBOOK_IGNORES_DEPRECATED_CALLS -I<liquibook>/src replay.cpp
//   liquibook_replay STREAM.bin book|per-message [FILLS.bin]
//
// STREAM.bin: packed little-endian 34-byte records (kind u8, side u8, price i64, qty i64,
// order_id i64, target_id i64), i.e. `stream.tobytes()` of engine.stream.STREAM_DTYPE.
// Modes (the only difference is where an order object comes from):
//   book         orders preallocated in a vector before timing, OrderPtr = Order* (book alone);
//   per-message  each new order allocated inside the timed loop with std::make_shared, OrderPtr =
//                std::shared_ptr<Order> (the pattern of Liquibook's mt_order_entry example).
// Timed: the replay loop only (steady_clock), after loading and preallocation; book teardown is
// not timed. Output: {"mode", "messages", "seconds", "fills", "filled_qty", "rejected",
// "resting"}; fills are counted in the book's on_fill callback. FILLS.bin, if given, receives
// every fill as engine.stream.FILL_DTYPE records (maker_id, taker_id, price, qty), collected in
// the timed loop (so a run that records is not a figure to quote).
//
// Mapping of our kinds onto Liquibook (engine/stream.py; the README's "Order streams and fills"):
//   0 limit GTC  add(order, oc_no_conditions)
//   1 market     price 0 (Liquibook's MARKET_ORDER_PRICE) and oc_immediate_or_cancel
//   2 cancel     cancel(order), the order found through a live id -> order map kept here
//   3 replace    replace(order, new qty - open qty, new price)
//   4 limit IOC  add(order, oc_immediate_or_cancel)
//   5 limit FOK  add(order, oc_fill_or_kill), i.e. oc_all_or_none | oc_immediate_or_cancel
//
// Semantic differences found (none of them occurs in the standard workload, which has only
// kinds 0, 1 and 2, unique ids and cancels of resting orders; there the fills are identical):
// - Replace: Liquibook always takes the order out and adds it again at the back of its level,
//   even at the same price with a smaller quantity; ours keeps time priority for a same-price
//   reduction. Its replace takes a size delta applied to the open quantity; we pass the new open
//   quantity minus the open one, which is the same thing. A crossing replace trades as the taker
//   in both.
// - Ids: Liquibook has none; it identifies an order by its pointer, and cancel/replace find it
//   by scanning its price level from the front (cost grows with the queue position). The map
//   here rejects a new order whose id is a live order's; reusing the id of an order that is
//   filled or cancelled is accepted here and rejected by ours (we would need a set of every
//   accepted id, not just the live ones).
// - Cancel or replace of an unknown or no longer resting id: rejected here, before the book
//   (Liquibook needs the order pointer; given one, it answers cancel_reject "not found").
// - Field checks: Liquibook's Price and Quantity are uint64_t, it rejects only quantity 0 and
//   takes price 0 as a market order. Unknown kinds and sides, quantity <= 0 and limit or replace
//   price <= 0 are rejected here before the book, as ours rejects them.
// - Market orders: without oc_immediate_or_cancel a Liquibook market order that is not filled
//   rests in the book at price 0 and matches any later order; ours never rests, hence IOC.
// - FOK that cannot fill: Liquibook accepts it and then cancels it (on_accept, on_cancel); ours
//   rejects it, so it counts in our "rejected" and not in this one's.
// - Each trade also sets Liquibook's market price (for its stop orders, unused here), and every
//   event (accept, fill, cancel, replace, book update) is queued as a Callback and dispatched
//   after the command through virtual calls; our batch replay appends fills to an array.

#include "book/order_book.h"

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iostream>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

namespace lb = liquibook::book;

namespace {

enum Kind : uint8_t { LIMIT_GTC = 0, MARKET = 1, CANCEL = 2, REPLACE = 3, LIMIT_IOC = 4, LIMIT_FOK = 5 };

constexpr size_t RECORD_SIZE = 34;

struct Record {
  uint8_t kind;
  uint8_t side;
  int64_t price;
  int64_t qty;
  int64_t order_id;
  int64_t target_id;
};

struct Fill {
  int64_t maker_id;
  int64_t taker_id;
  int64_t price;
  int64_t qty;
};

// The minimal order type OrderBook<OrderPtr> needs (it calls is_buy, price, order_qty and
// stop_price); `open` is ours, kept by on_fill and on_replace, to turn a replace's new open
// quantity into Liquibook's size delta and to know when an order leaves the book.
struct Order {
  Order(int64_t id, bool buy, lb::Price price, lb::Quantity qty)
      : id(id), buy(buy), price_(price), qty_(qty), open(qty) {}
  bool is_buy() const { return buy; }
  lb::Price price() const { return price_; }
  lb::Quantity order_qty() const { return qty_; }
  lb::Price stop_price() const { return 0; }

  int64_t id;
  bool buy;
  lb::Price price_;
  lb::Quantity qty_;
  lb::Quantity open;
};

template <class OrderPtr>
class Book : public lb::OrderBook<OrderPtr> {
 public:
  std::unordered_map<int64_t, OrderPtr> live;
  std::vector<Fill>* recorded = nullptr;
  uint64_t fills = 0;
  uint64_t filled_qty = 0;
  uint64_t rejected = 0;

 protected:
  void on_fill(const OrderPtr& order, const OrderPtr& matched_order, lb::Quantity fill_qty,
               lb::Price fill_price, bool, bool) override {
    ++fills;
    filled_qty += fill_qty;
    order->open -= fill_qty;
    matched_order->open -= fill_qty;
    if (matched_order->open == 0) {
      live.erase(matched_order->id);
    }
    if (recorded) {
      recorded->push_back({matched_order->id, order->id, static_cast<int64_t>(fill_price),
                           static_cast<int64_t>(fill_qty)});
    }
  }

  // Called before the fills of the same replace; current/new are order_qty() and
  // order_qty() + delta, as Liquibook's mt_order_entry example applies them.
  void on_replace(const OrderPtr& order, lb::Quantity current_qty, lb::Quantity new_qty,
                  lb::Price new_price) override {
    order->open += new_qty - current_qty;
    order->qty_ = new_qty;
    order->price_ = new_price;
  }

  void on_reject(const OrderPtr&, const char*) override { ++rejected; }
  void on_cancel_reject(const OrderPtr&, const char*) override { ++rejected; }
  void on_replace_reject(const OrderPtr&, const char*) override { ++rejected; }
};

std::vector<Record> load(const char* path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error(std::string("cannot read ") + path);
  }
  std::vector<char> bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (bytes.size() % RECORD_SIZE != 0) {
    throw std::runtime_error("stream size is not a multiple of 34 bytes");
  }
  std::vector<Record> records(bytes.size() / RECORD_SIZE);
  const char* at = bytes.data();
  for (Record& r : records) {
    r.kind = static_cast<uint8_t>(at[0]);
    r.side = static_cast<uint8_t>(at[1]);
    std::memcpy(&r.price, at + 2, 8);
    std::memcpy(&r.qty, at + 10, 8);
    std::memcpy(&r.order_id, at + 18, 8);
    std::memcpy(&r.target_id, at + 26, 8);
    at += RECORD_SIZE;
  }
  return records;
}

bool is_new_order(uint8_t kind) {
  return kind == LIMIT_GTC || kind == MARKET || kind == LIMIT_IOC || kind == LIMIT_FOK;
}

Order new_order(const Record& r) {
  lb::Price price = r.kind == MARKET ? lb::MARKET_ORDER_PRICE : static_cast<lb::Price>(r.price);
  return Order(r.order_id, r.side == 0, price, static_cast<lb::Quantity>(r.qty));
}

// Replays `records`; `make(record)` gives the order object of each new-order message, valid or
// not (made by `new_order`).
template <class OrderPtr, class Make>
void replay(Book<OrderPtr>& book, const std::vector<Record>& records, Make make, uint64_t& harness_rejects) {
  for (const Record& r : records) {
    if (is_new_order(r.kind)) {
      OrderPtr order = make(r);
      bool limit = r.kind != MARKET;
      if (r.side > 1 || r.qty <= 0 || (limit && r.price <= 0) || book.live.count(r.order_id)) {
        ++harness_rejects;
        continue;
      }
      switch (r.kind) {
        case LIMIT_GTC:
          book.add(order, lb::oc_no_conditions);
          if (order->open) {
            book.live.emplace(r.order_id, order);
          }
          break;
        case LIMIT_FOK:
          book.add(order, lb::oc_fill_or_kill);
          break;
        default:  // MARKET, LIMIT_IOC
          book.add(order, lb::oc_immediate_or_cancel);
          break;
      }
    } else if (r.kind == CANCEL) {
      auto found = book.live.find(r.target_id);
      if (found == book.live.end()) {
        ++harness_rejects;
        continue;
      }
      OrderPtr order = found->second;
      book.live.erase(found);
      book.cancel(order);
    } else if (r.kind == REPLACE) {
      auto found = book.live.find(r.target_id);
      if (found == book.live.end() || r.qty <= 0 || r.price <= 0) {
        ++harness_rejects;
        continue;
      }
      OrderPtr order = found->second;
      book.replace(order, r.qty - static_cast<int64_t>(order->open), static_cast<lb::Price>(r.price));
      if (order->open == 0) {
        book.live.erase(r.target_id);
      }
    } else {
      ++harness_rejects;
    }
  }
}

template <class OrderPtr, class Make>
int run(const char* mode, const std::vector<Record>& records, Make make, const char* fills_path) {
  Book<OrderPtr> book;
  std::vector<Fill> recorded;
  if (fills_path) {
    book.recorded = &recorded;
  }
  uint64_t harness_rejects = 0;
  auto start = std::chrono::steady_clock::now();
  replay(book, records, make, harness_rejects);
  auto stop = std::chrono::steady_clock::now();
  double seconds = std::chrono::duration<double>(stop - start).count();
  if (fills_path) {
    std::ofstream out(fills_path, std::ios::binary);
    out.write(reinterpret_cast<const char*>(recorded.data()),
              static_cast<std::streamsize>(recorded.size() * sizeof(Fill)));
    if (!out) {
      std::cerr << "cannot write " << fills_path << "\n";
      return 1;
    }
  }
  std::printf(
      "{\"mode\": \"%s\", \"messages\": %zu, \"seconds\": %.9f, \"fills\": %llu, \"filled_qty\": %llu, "
      "\"rejected\": %llu, \"resting\": %zu}\n",
      mode, records.size(), seconds, static_cast<unsigned long long>(book.fills),
      static_cast<unsigned long long>(book.filled_qty),
      static_cast<unsigned long long>(book.rejected + harness_rejects),
      book.bids().size() + book.asks().size());
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 3 || argc > 4) {
    std::cerr << "usage: " << argv[0] << " STREAM.bin book|per-message [FILLS.bin]\n";
    return 2;
  }
  std::string mode = argv[2];
  const char* fills_path = argc == 4 ? argv[3] : nullptr;
  try {
    std::vector<Record> records = load(argv[1]);
    if (mode == "book") {
      std::vector<Order> orders;
      for (const Record& r : records) {
        if (is_new_order(r.kind)) {
          orders.push_back(new_order(r));
        }
      }
      Order* next = orders.data();
      return run<Order*>("book", records, [&next](const Record&) { return next++; }, fills_path);
    }
    if (mode == "per-message") {
      return run<std::shared_ptr<Order>>(
          "per-message", records,
          [](const Record& r) { return std::make_shared<Order>(new_order(r)); },
          fills_path);
    }
    std::cerr << "unknown mode " << mode << " (book or per-message)\n";
    return 2;
  } catch (const std::exception& error) {
    std::cerr << error.what() << "\n";
    return 1;
  }
}
