package ai.punica.tokenizer;

import static org.assertj.core.api.Assertions.assertThat;

import java.time.LocalDate;
import org.junit.jupiter.api.Test;

class StrftimeTest {
    /** Expected values printed by Python 3.12's date.strftime for these dates (week numbers differ at year ends). */
    @Test
    void weekNumbersAndWeekdaysMatchPython() {
        String format = "%U|%W|%w|%u|%j|%a %b %d";
        assertThat(Strftime.format(LocalDate.of(2024, 1, 1), format)).isEqualTo("00|01|1|1|001|Mon Jan 01");
        assertThat(Strftime.format(LocalDate.of(2023, 1, 1), format)).isEqualTo("01|00|0|7|001|Sun Jan 01");
        assertThat(Strftime.format(LocalDate.of(2024, 7, 26), format)).isEqualTo("29|30|5|5|208|Fri Jul 26");
        assertThat(Strftime.format(LocalDate.of(2026, 12, 31), format)).isEqualTo("52|52|4|4|365|Thu Dec 31");
        assertThat(Strftime.format(LocalDate.of(2022, 1, 2), format)).isEqualTo("01|00|0|7|002|Sun Jan 02");
    }
}
