package ai.punica.server;

import ai.punica.engine.Completion;
import ai.punica.engine.Continuation;
import ai.punica.engine.EngineException;
import ai.punica.engine.PromptLogprob;
import ai.punica.engine.TokenDelta;
import java.util.List;

/**
 * What the engine thread hands to the HTTP handler's virtual thread for one choice of a request,
 * through the request's queue (the engine thread must never wait on a client).
 */
sealed interface ChoiceEvent {
    int choice();

    /** A token; {@code nanos} is when the engine emitted it (for TTFT and inter-token latency). */
    record Token(int choice, TokenDelta delta, long nanos) implements ChoiceEvent {
    }

    /** The prompt's log-probabilities, before its first token (a stream's echo with logprobs shows them). */
    record Prompt(int choice, List<PromptLogprob> logprobs) implements ChoiceEvent {
    }

    record Finished(int choice, Completion completion) implements ChoiceEvent {
    }

    record Failed(int choice, EngineException error) implements ChoiceEvent {
    }

    /** The engine preempted the request; it could go on elsewhere from {@code continuation} (a router's migration). */
    record Preempted(int choice, Continuation continuation) implements ChoiceEvent {
    }
}
