package ai.punica.tokenizer;

import java.time.DayOfWeek;
import java.time.Month;
import java.time.format.TextStyle;
import java.time.temporal.ChronoField;
import java.time.temporal.TemporalAccessor;
import java.util.Locale;

/** Python's {@code datetime.strftime} in the C locale, for transformers' {@code strftime_now}. */
final class Strftime {
    private Strftime() {
    }

    static String format(TemporalAccessor t, String format) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < format.length(); i++) {
            char c = format.charAt(i);
            if (c != '%' || i + 1 >= format.length()) {
                sb.append(c);
                continue;
            }
            char f = format.charAt(++i);
            int yday = t.get(ChronoField.DAY_OF_YEAR) - 1;
            int mondayBased = t.get(ChronoField.DAY_OF_WEEK) - 1;
            switch (f) {
                case 'd' -> sb.append(two(t.get(ChronoField.DAY_OF_MONTH)));
                case 'e' -> sb.append(String.format("%2d", t.get(ChronoField.DAY_OF_MONTH)));
                case 'm' -> sb.append(two(t.get(ChronoField.MONTH_OF_YEAR)));
                case 'Y' -> sb.append(t.get(ChronoField.YEAR));
                case 'y' -> sb.append(two(t.get(ChronoField.YEAR) % 100));
                case 'b', 'h' -> sb.append(Month.of(t.get(ChronoField.MONTH_OF_YEAR))
                        .getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'B' -> sb.append(Month.of(t.get(ChronoField.MONTH_OF_YEAR))
                        .getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'a' -> sb.append(DayOfWeek.of(t.get(ChronoField.DAY_OF_WEEK))
                        .getDisplayName(TextStyle.SHORT, Locale.ENGLISH));
                case 'A' -> sb.append(DayOfWeek.of(t.get(ChronoField.DAY_OF_WEEK))
                        .getDisplayName(TextStyle.FULL, Locale.ENGLISH));
                case 'j' -> sb.append(String.format("%03d", yday + 1));
                case 'H' -> sb.append(two(fieldOrZero(t, ChronoField.HOUR_OF_DAY)));
                case 'I' -> sb.append(two((fieldOrZero(t, ChronoField.HOUR_OF_DAY) + 11) % 12 + 1));
                case 'p' -> sb.append(fieldOrZero(t, ChronoField.HOUR_OF_DAY) < 12 ? "AM" : "PM");
                case 'M' -> sb.append(two(fieldOrZero(t, ChronoField.MINUTE_OF_HOUR)));
                case 'S' -> sb.append(two(fieldOrZero(t, ChronoField.SECOND_OF_MINUTE)));
                case 'f' -> sb.append(String.format("%06d", fieldOrZero(t, ChronoField.MICRO_OF_SECOND)));
                // Weeks of the year: days before the first Sunday (%U) or Monday (%W) are week 0.
                case 'U' -> sb.append(two((yday + 7 - (mondayBased + 1) % 7) / 7));
                case 'W' -> sb.append(two((yday + 7 - mondayBased) / 7));
                case 'w' -> sb.append((mondayBased + 1) % 7);
                case 'u' -> sb.append(mondayBased + 1);
                case '%' -> sb.append('%');
                default -> sb.append('%').append(f);
            }
        }
        return sb.toString();
    }

    private static String two(int v) {
        return String.format("%02d", v);
    }

    private static int fieldOrZero(TemporalAccessor t, ChronoField field) {
        return t.isSupported(field) ? t.get(field) : 0;
    }
}
