// A small FIX 4.4 initiator written against QuickFIX (an engine independent of the gateway's),
// driven by a test through stdin, one command a line, printing one line per event on stdout
// (SOH shown as |). Built by tests/test_fix_quickfix.py:
//   g++ -std=gnu++14 initiator.cpp -lquickfix -lpthread
//
// usage: initiator SETTINGS_FILE USERNAME PASSWORD
//
// Commands                                               FIX sent
//   order CLORDID SYMBOL SIDE QTY PRICE|- ORDTYPE TIF [TAG=VALUE...]
//                                                          NewOrderSingle (PRICE - for none; more fields:
//                                                          StopPx 99=..., MaxFloor 111=...)
//   cancel CLORDID ORIGCLORDID SYMBOL SIDE                 OrderCancelRequest
//   replace CLORDID ORIGCLORDID SYMBOL SIDE QTY PRICE ORDTYPE
//                                                          OrderCancelReplaceRequest
//   masscancel CLORDID [SYMBOL]                            OrderMassCancelRequest (7: all, 1: SYMBOL)
//   md MDREQID SYMBOL [TYPE]                               MarketDataRequest (TYPE: SubscriptionRequestType,
//                                                          1 snapshot + updates by default, 2 unsubscribe)
//   seclist REQID                                          SecurityListRequest (all)
//   statusreq CLORDID SYMBOL SIDE [REQID]                  OrderStatusRequest (OrdStatusReqID REQID)
//   expect_target N                                        none: QuickFIX now expects MsgSeqNum N from
//                                                          the gateway (below the real one: it asks for
//                                                          a resend when the next message comes)
//   status                                                 prints STATUS LOGGEDON NEXT_SENDER NEXT_TARGET
//   logout                                                 Logout
//   quit                                                   stops the initiator and exits
// Lines printed: READY, LOGON, LOGOUT, IN-APP <msg>, IN-ADMIN <msg>, OUT-APP <msg>, OUT-ADMIN <msg>,
// STATUS ..., ERROR <text>. With a data dictionary in the settings (UseDataDictionary=Y), QuickFIX
// checks every message received against it and answers one it finds wrong with a Reject (OUT-ADMIN 35=3).

#include "quickfix/Application.h"
#include "quickfix/FileStore.h"
#include "quickfix/Session.h"
#include "quickfix/SessionSettings.h"
#include "quickfix/SocketInitiator.h"
#include "quickfix/fix44/MarketDataRequest.h"
#include "quickfix/fix44/NewOrderSingle.h"
#include "quickfix/fix44/OrderCancelReplaceRequest.h"
#include "quickfix/fix44/OrderCancelRequest.h"
#include "quickfix/fix44/OrderMassCancelRequest.h"
#include "quickfix/fix44/OrderStatusRequest.h"
#include "quickfix/fix44/SecurityListRequest.h"

#include <algorithm>
#include <iostream>
#include <mutex>
#include <sstream>
#include <string>
#include <vector>

static std::mutex output;

static void say(const std::string& line) {
  std::lock_guard<std::mutex> lock(output);
  std::cout << line << std::endl;
}

static std::string shown(const FIX::Message& message) {
  std::string text = message.toString();
  std::replace(text.begin(), text.end(), '\x01', '|');
  return text;
}

class Peer : public FIX::Application {
 public:
  Peer(const std::string& username, const std::string& password) : username_(username), password_(password) {}
  FIX::SessionID session;

  void onCreate(const FIX::SessionID& id) { session = id; }
  void onLogon(const FIX::SessionID&) { say("LOGON"); }
  void onLogout(const FIX::SessionID&) { say("LOGOUT"); }
  void toAdmin(FIX::Message& message, const FIX::SessionID&) {
    FIX::MsgType type;
    message.getHeader().getField(type);
    if (type == FIX::MsgType_Logon) {
      message.setField(FIX::Username(username_));
      message.setField(FIX::Password(password_));
    }
    say("OUT-ADMIN " + shown(message));
  }
  void toApp(FIX::Message& message, const FIX::SessionID&) throw(FIX::DoNotSend) {
    say("OUT-APP " + shown(message));
  }
  void fromAdmin(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::RejectLogon) {
    say("IN-ADMIN " + shown(message));
  }
  void fromApp(const FIX::Message& message, const FIX::SessionID&)
      throw(FIX::FieldNotFound, FIX::IncorrectDataFormat, FIX::IncorrectTagValue, FIX::UnsupportedMessageType) {
    say("IN-APP " + shown(message));
  }

 private:
  std::string username_, password_;
};

static char side_of(const std::string& word) { return word.at(0); }

static void run(Peer& peer, const std::vector<std::string>& words) {
  const std::string& command = words.at(0);
  FIX::TransactTime now;
  if (command == "order") {
    FIX44::NewOrderSingle order(FIX::ClOrdID(words.at(1)), FIX::Side(side_of(words.at(3))), now,
                                FIX::OrdType(words.at(6).at(0)));
    order.set(FIX::Symbol(words.at(2)));
    order.set(FIX::OrderQty(std::stod(words.at(4))));
    if (words.at(5) != "-") order.setField(FIX::StringField(FIX::FIELD::Price, words.at(5)));
    order.set(FIX::TimeInForce(words.at(7).at(0)));
    for (size_t i = 8; i < words.size(); ++i) {  // TAG=VALUE: StopPx, MaxFloor, ExecInst...
      size_t equals = words[i].find('=');
      order.setField(FIX::StringField(std::stoi(words[i].substr(0, equals)), words[i].substr(equals + 1)));
    }
    FIX::Session::sendToTarget(order, peer.session);
  } else if (command == "cancel") {
    FIX44::OrderCancelRequest cancel(FIX::OrigClOrdID(words.at(2)), FIX::ClOrdID(words.at(1)),
                                     FIX::Side(side_of(words.at(4))), now);
    cancel.set(FIX::Symbol(words.at(3)));
    FIX::Session::sendToTarget(cancel, peer.session);
  } else if (command == "replace") {
    FIX44::OrderCancelReplaceRequest replace(FIX::OrigClOrdID(words.at(2)), FIX::ClOrdID(words.at(1)),
                                             FIX::Side(side_of(words.at(4))), now,
                                             FIX::OrdType(words.at(7).at(0)));
    replace.set(FIX::Symbol(words.at(3)));
    replace.set(FIX::OrderQty(std::stod(words.at(5))));
    replace.setField(FIX::StringField(FIX::FIELD::Price, words.at(6)));
    FIX::Session::sendToTarget(replace, peer.session);
  } else if (command == "masscancel") {
    bool one = words.size() > 2;
    FIX44::OrderMassCancelRequest mass(FIX::ClOrdID(words.at(1)),
                                       FIX::MassCancelRequestType(one ? '1' : '7'), now);
    if (one) mass.set(FIX::Symbol(words.at(2)));
    FIX::Session::sendToTarget(mass, peer.session);
  } else if (command == "md") {
    FIX44::MarketDataRequest request(FIX::MDReqID(words.at(1)),
                                     FIX::SubscriptionRequestType(words.size() > 3 ? words.at(3).at(0) : '1'),
                                     FIX::MarketDepth(0));
    request.set(FIX::MDUpdateType(1));
    FIX44::MarketDataRequest::NoMDEntryTypes types;
    types.set(FIX::MDEntryType('0'));
    request.addGroup(types);
    types.set(FIX::MDEntryType('1'));
    request.addGroup(types);
    types.set(FIX::MDEntryType('2'));
    request.addGroup(types);
    FIX44::MarketDataRequest::NoRelatedSym symbols;
    symbols.set(FIX::Symbol(words.at(2)));
    request.addGroup(symbols);
    FIX::Session::sendToTarget(request, peer.session);
  } else if (command == "seclist") {
    FIX44::SecurityListRequest request(FIX::SecurityReqID(words.at(1)), FIX::SecurityListRequestType(4));
    FIX::Session::sendToTarget(request, peer.session);
  } else if (command == "statusreq") {
    FIX44::OrderStatusRequest request(FIX::ClOrdID(words.at(1)), FIX::Side(side_of(words.at(3))));
    request.set(FIX::Symbol(words.at(2)));
    if (words.size() > 4) request.set(FIX::OrdStatusReqID(words.at(4)));
    FIX::Session::sendToTarget(request, peer.session);
  } else if (command == "expect_target") {
    FIX::Session::lookupSession(peer.session)->setNextTargetMsgSeqNum(std::stoi(words.at(1)));
    say("EXPECTING " + words.at(1));
  } else if (command == "status") {
    FIX::Session* session = FIX::Session::lookupSession(peer.session);
    std::ostringstream line;
    line << "STATUS " << (session->isLoggedOn() ? 1 : 0) << " " << session->getExpectedSenderNum() << " "
         << session->getExpectedTargetNum();
    say(line.str());
  } else if (command == "logout") {
    FIX::Session::lookupSession(peer.session)->logout("done");
  } else {
    say("ERROR unknown command " + command);
  }
}

int main(int argc, char** argv) {
  if (argc != 4) {
    std::cerr << "usage: initiator SETTINGS_FILE USERNAME PASSWORD" << std::endl;
    return 2;
  }
  try {
    FIX::SessionSettings settings(argv[1]);
    Peer peer(argv[2], argv[3]);
    FIX::FileStoreFactory store(settings);
    FIX::SocketInitiator initiator(peer, store, settings);
    initiator.start();
    say("READY");
    std::string line;
    while (std::getline(std::cin, line)) {
      std::istringstream words_in(line);
      std::vector<std::string> words;
      std::string word;
      while (words_in >> word) words.push_back(word);
      if (words.empty()) continue;
      if (words[0] == "quit") break;
      try {
        run(peer, words);
      } catch (std::exception& e) {
        say(std::string("ERROR ") + e.what());
      }
    }
    initiator.stop();
    say("STOPPED");
    return 0;
  } catch (std::exception& e) {
    say(std::string("ERROR ") + e.what());
    return 1;
  }
}
