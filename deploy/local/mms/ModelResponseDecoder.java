/*
 * Replaces multi-model-server 1.1.11's decoder of worker responses in the model-server tier.
 *
 * MMS's own decoder reads a response's status code and header map without checking that
 * those bytes have arrived. Netty hands it whatever one socket read returned, and its read
 * size adapts to recent messages, so after a run of small responses a larger one (a handler
 * error with a long message, or a response carrying headers) is decoded from a partial buffer:
 * IndexOutOfBoundsException, the worker is declared dead, the request gets 500 "Worker died."
 * and the model reloads. This version decodes only once the whole frame is there; the frame
 * format is the one mms/protocol/otf_message_handler.py writes (big-endian int lengths):
 *
 *   code, message, { request id, content type, status, reason phrase,
 *                    header count, { name, value }..., body }..., -1
 */
package com.amazonaws.ml.mms.util.codec;

import com.amazonaws.ml.mms.util.messages.ModelWorkerResponse;
import com.amazonaws.ml.mms.util.messages.Predictions;
import io.netty.buffer.ByteBuf;
import io.netty.channel.ChannelHandlerContext;
import io.netty.handler.codec.ByteToMessageDecoder;
import io.netty.handler.codec.CorruptedFrameException;
import java.nio.charset.StandardCharsets;
import java.util.ArrayList;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

public class ModelResponseDecoder extends ByteToMessageDecoder {

    private static final int END = -1;
    private static final int INCOMPLETE = -1;

    private final int maxBufferSize;

    public ModelResponseDecoder(int maxBufferSize) {
        this.maxBufferSize = maxBufferSize;
    }

    @Override
    protected void decode(ChannelHandlerContext ctx, ByteBuf in, List<Object> out) {
        if (frameEnd(in) == INCOMPLETE) {
            return; // Netty calls again when more bytes arrive
        }
        ModelWorkerResponse response = new ModelWorkerResponse();
        response.setCode(in.readInt());
        response.setMessage(readString(in));
        List<Predictions> predictions = new ArrayList<>();
        for (int length = in.readInt(); length != END; length = in.readInt()) {
            Predictions prediction = new Predictions();
            prediction.setRequestId(readString(in, length));
            prediction.setContentType(readString(in));
            prediction.setStatusCode(in.readInt());
            prediction.setReasonPhrase(readString(in));
            int count = in.readInt();
            Map<String, String> headers = new HashMap<>();
            for (int i = 0; i < count; i++) {
                headers.put(readString(in), readString(in));
            }
            prediction.setHeaders(headers);
            byte[] body = new byte[in.readInt()];
            in.readBytes(body);
            prediction.setResp(body);
            predictions.add(prediction);
        }
        response.setPredictions(predictions);
        out.add(response);
    }

    /** Index just past the frame at the reader index, or INCOMPLETE; consumes nothing. */
    private int frameEnd(ByteBuf in) {
        int at = skipInt(in, in.readerIndex()); // code
        at = skipField(in, at); // message
        while (at != INCOMPLETE) {
            if (at + 4 > in.writerIndex()) {
                return INCOMPLETE;
            }
            if (in.getInt(at) == END) {
                return at + 4;
            }
            at = skipField(in, at); // request id
            at = skipField(in, at); // content type
            at = skipInt(in, at); // status
            at = skipField(in, at); // reason phrase
            if (at == INCOMPLETE || at + 4 > in.writerIndex()) {
                return INCOMPLETE;
            }
            int count = in.getInt(at);
            at += 4;
            for (int i = 0; i < count && at != INCOMPLETE; i++) {
                at = skipField(in, skipField(in, at)); // header name, value
            }
            at = skipField(in, at); // body
        }
        return INCOMPLETE;
    }

    private static int skipInt(ByteBuf in, int at) {
        return at != INCOMPLETE && at + 4 <= in.writerIndex() ? at + 4 : INCOMPLETE;
    }

    /** Skip a length-prefixed field. */
    private int skipField(ByteBuf in, int at) {
        if (skipInt(in, at) == INCOMPLETE) {
            return INCOMPLETE;
        }
        int length = in.getInt(at);
        if (length < 0 || length > maxBufferSize) {
            throw new CorruptedFrameException("worker response field of " + length + " bytes");
        }
        return at + 4 + length <= in.writerIndex() ? at + 4 + length : INCOMPLETE;
    }

    private static String readString(ByteBuf in) {
        return readString(in, in.readInt());
    }

    private static String readString(ByteBuf in, int length) {
        byte[] bytes = new byte[length];
        in.readBytes(bytes);
        return new String(bytes, StandardCharsets.UTF_8);
    }
}
