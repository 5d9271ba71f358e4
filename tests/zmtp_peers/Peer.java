// ZMTP conformance peer over JeroMQ (0.3.6 in Debian: ZMTP 2.0): the line
// protocol of README.md. Compiled by tests/zmtp_conformance.rs with javac
// against /usr/share/java/jeromq.jar into a temporary directory.
import java.io.BufferedReader;
import java.io.InputStreamReader;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

import org.zeromq.ZMQ;

public class Peer {
    static byte[] unhex(String s) {
        if (s.equals("-")) return new byte[0];
        byte[] out = new byte[s.length() / 2];
        for (int i = 0; i < out.length; i++) {
            out[i] = (byte) Integer.parseInt(s.substring(2 * i, 2 * i + 2), 16);
        }
        return out;
    }

    static String hex(byte[] b) {
        if (b.length == 0) return "-";
        StringBuilder sb = new StringBuilder();
        for (byte x : b) sb.append(String.format("%02x", x & 0xff));
        return sb.toString();
    }

    static int type(String name) {
        switch (name) {
            case "PUB": return ZMQ.PUB;
            case "SUB": return ZMQ.SUB;
            case "XPUB": return ZMQ.XPUB;
            case "XSUB": return ZMQ.XSUB;
            default: throw new IllegalArgumentException("socket type " + name);
        }
    }

    public static void main(String[] argv) throws Exception {
        ZMQ.Context ctx = ZMQ.context(1);
        Map<String, ZMQ.Socket> sockets = new HashMap<>();
        BufferedReader in = new BufferedReader(new InputStreamReader(System.in));
        String line;
        while ((line = in.readLine()) != null) {
            String[] w = line.trim().split("\\s+");
            if (w.length == 0 || w[0].isEmpty()) continue;
            String reply;
            try {
                switch (w[0]) {
                    case "version":
                        int v = ZMQ.getFullVersion();
                        reply = "version JeroMQ (libzmq API " + v / 10000 + "." + v / 100 % 100 + "." + v % 100 + ")";
                        break;
                    case "socket": {
                        ZMQ.Socket s = ctx.socket(type(w[2]));
                        s.setLinger(0);
                        s.connect(w[3]);
                        sockets.put(w[1], s);
                        reply = "ok";
                        break;
                    }
                    case "sub":
                        sockets.get(w[1]).subscribe(unhex(w[2]));
                        reply = "ok";
                        break;
                    case "unsub":
                        sockets.get(w[1]).unsubscribe(unhex(w[2]));
                        reply = "ok";
                        break;
                    case "send": {
                        ZMQ.Socket s = sockets.get(w[1]);
                        boolean sent = true;
                        for (int i = 2; i < w.length; i++) {
                            sent &= s.send(unhex(w[i]), i + 1 < w.length ? ZMQ.SNDMORE : 0);
                        }
                        reply = sent ? "ok" : "error not sent";
                        break;
                    }
                    case "recv": {
                        ZMQ.Socket s = sockets.get(w[1]);
                        s.setReceiveTimeOut(Integer.parseInt(w[2]));
                        byte[] first = s.recv(0);
                        if (first == null) {
                            reply = "timeout";
                            break;
                        }
                        List<String> frames = new ArrayList<>();
                        frames.add(hex(first));
                        while (s.hasReceiveMore()) frames.add(hex(s.recv(0)));
                        reply = "msg " + String.join(" ", frames);
                        break;
                    }
                    case "close":
                        sockets.remove(w[1]).close();
                        reply = "ok";
                        break;
                    default:
                        reply = "error unknown command " + w[0];
                }
            } catch (Exception e) {
                reply = "error " + e;
            }
            System.out.println(reply);
            System.out.flush();
        }
        for (ZMQ.Socket s : sockets.values()) s.close();
        ctx.term();
    }
}
