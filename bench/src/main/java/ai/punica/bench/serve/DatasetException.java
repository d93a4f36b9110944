package ai.punica.bench.serve;

/** A dataset file that cannot be used; the message names the file, the line and what is wrong with it. */
public final class DatasetException extends RuntimeException {
    public DatasetException(String message) {
        super(message);
    }
}
